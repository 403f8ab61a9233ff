"""The README and docs/architecture.md describe the repository that exists: every path they
name is there, nothing points outside the repository, the control socket's default is
stated one way, and the quick start's config is the one tests/e2e/test_quickstart.py runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.harness import run_vaultd
from vaultd import sources

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "docs" / "architecture.md"]
# A repository path as the docs write it: not part of a longer path such as ~/.config/systemd.
REPO_PATH = re.compile(
    r"(?<![\w/.~$-])((?:src|tests|docs|bench|systemd|launchd|docker)/[\w./-]*\w)"
)


def named_paths(text: str) -> set[str]:
    return set(REPO_PATH.findall(text))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_repository_path_named_exists(doc: Path) -> None:
    named = named_paths(doc.read_text())
    assert any(p.startswith("src/vaultd/") for p in named)  # the pattern finds them at all
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert missing == [], f"{doc.name} names paths that do not exist"


def test_the_path_pattern_skips_paths_outside_the_repository() -> None:
    text = "`src/vaultd/cli/`, ~/.config/systemd/user/vaultd.service and (docs/a.md)."
    assert named_paths(text) == {"src/vaultd/cli", "docs/a.md"}


def _tracked_text_files() -> list[Path]:
    roots = ["README.md", "Makefile", "pyproject.toml", ".ci", "docs", "src", "tests", "bench"]
    roots += ["docker", "systemd", "launchd"]
    files: list[Path] = []
    for root in roots:
        path = REPO / root
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [
            f
            for f in candidates
            if f.is_file()
            and not any(
                part in ("node_modules", "__pycache__") or part.endswith(".egg-info")
                for part in f.parts
            )
            and f.suffix != ".pyc"
        ]
    return files


def test_nothing_points_at_files_outside_the_repository() -> None:
    # Design notes that lived next to the repository, which its users do not have.
    outside = re.compile(
        r"\.\./shared|\bshared/|"
        + "|".join(re.escape(n + ".md") for n in ("DESIGN", "imds-protocol", "aws-vault-notes"))
    )
    me = Path(__file__).resolve()
    found = [
        f"{f.relative_to(REPO)}:{n}"
        for f in _tracked_text_files()
        if f.resolve() != me
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert found == []


def test_markdown_links_stay_inside_the_repository() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#]+)", doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(REPO), target
            assert resolved.exists(), target


def _flat(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def test_the_control_socket_default_is_stated_one_way() -> None:
    phrase = sources.DEFAULT_SOCKET_TEXT
    for doc in DOCS:
        text = _flat(doc.read_text())
        # Every mention of the fallback directory is inside the one phrase.
        assert text.count(".local/state/vaultd") == text.count(phrase), doc.name
    assert _flat(DOCS[0].read_text()).count(phrase) >= 1
    for command in ("serve", "switch", "status"):
        done = run_vaultd(command, "--help")
        assert phrase in _flat(done.stdout), command


def test_the_module_table_names_every_module() -> None:
    lines = DOCS[0].read_text().splitlines()

    def named(module: Path) -> bool:
        path = module.relative_to(REPO).as_posix()
        folder = module.parent.relative_to(REPO).as_posix() + "/"
        return any(
            path in line or (f"`{folder}`" in line and f"`{module.name}`" in line) for line in lines
        )

    modules = sorted((REPO / "src" / "vaultd").rglob("*.py"))
    missing = [
        m.relative_to(REPO).as_posix()
        for m in modules
        if m.name not in ("__init__.py", "__main__.py") and not named(m)
    ]
    assert missing == [], "add these to the module table at the end of README.md"
