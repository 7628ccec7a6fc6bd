"""Training: losses, penalties, the update steps and the distributed loop."""
