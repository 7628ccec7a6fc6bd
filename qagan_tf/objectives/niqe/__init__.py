"""The NIQE gradient penalty: priors (what a pristine model describes), settings (the niqe
config group and its resolution against a prior), transform (D's gradients -> the prior's maps
and their distance), fit (bin/fit_niqe_prior) and penalty (the function and registry entry)."""
