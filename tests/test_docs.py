"""The documentation's relative links resolve: every file it points to exists, and every #anchor
names a heading of that file (GitHub's slugs)."""

import glob
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages():
  return [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def slug(heading):
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"[`*]", "", heading.strip().lower())
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(path):
  with open(path) as f:
    text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
  return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def broken_links(path):
  with open(path) as f:
    text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
  broken = []
  for target in _LINK.findall(text):
    if re.match(r"^[a-z]+://|^mailto:", target):
      continue
    file_part, _, anchor = target.partition("#")
    linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
    if not os.path.exists(linked):
      broken.append(target)
    elif anchor and linked.endswith(".md") and anchor not in anchors(linked):
      broken.append(target)
  return broken


def test_every_relative_link_resolves():
  pages = _pages()
  assert len(pages) >= 6  # The README and at least 5 pages in docs/.
  problems = {os.path.relpath(p, REPO): broken_links(p) for p in pages}
  assert not any(problems.values()), {p: b for p, b in problems.items() if b}


def test_the_readme_is_a_front_door():
  assert os.path.getsize(os.path.join(REPO, "README.md")) <= 15_000


def test_the_check_finds_a_broken_link_and_a_missing_anchor(tmp_path):
  (tmp_path / "a.md").write_text("# Top part\n[ok](#top-part) [file](b.md) [gone](c.md) "
                                 "[bad](b.md#nowhere) [web](https://example.com/x)\n")
  (tmp_path / "b.md").write_text("## Some `code` heading\n")
  assert broken_links(str(tmp_path / "a.md")) == ["c.md", "b.md#nowhere"]
  assert anchors(str(tmp_path / "b.md")) == {"some-code-heading"}
