"""The one helper that builds a path from a study name, and the writability check that runs
before any training (the command-line cases are in tests/test_bad_input.py)."""

import os
from pathlib import Path

import pytest

from study.errors import UserError
from study.paths import check_writable, name_problem, named_folder

ESCAPING = ["../../etc/evil", "..", ".", "/abs/dir", "a/b", "a\nb", "x" * 101,
            "<img src=x onerror=alert(1)>", "", ".hidden", "name with space", "tab\tname",
            "caf\u00e9"]


@pytest.mark.parametrize("name", ESCAPING, ids=repr)
def test_a_name_that_is_not_one_plain_component_is_refused(tmp_path, name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(UserError, match="is not allowed"):
        named_folder(tmp_path / "reports", name)


@pytest.mark.parametrize("name", ["ofat-quick", "article-full", "my_study.v2", "-x", "A" * 100])
def test_a_plain_name_gives_a_folder_inside_its_root(tmp_path, name: str) -> None:
    root = tmp_path / "reports"
    folder = named_folder(root, name)
    assert folder.parent == root and root.resolve() in folder.resolve().parents


def test_a_symbolic_link_out_of_the_root_is_refused(tmp_path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "reports" / "study").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="leads outside"):
        named_folder(tmp_path / "reports", "study")


def test_check_writable_creates_nothing_and_names_what_blocks(tmp_path, monkeypatch) -> None:
    check_writable(tmp_path / "a" / "b", "reports")  # may be created
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=f"storage: {tmp_path / 'file'} is not a folder"):
        check_writable(tmp_path / "file" / "db", "storage")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and
                        real_access(path, mode))  # read-only, even for root
    with pytest.raises(UserError, match=f"artifact_dir: cannot write to {tmp_path}"):
        check_writable(tmp_path / "artifacts", "artifact_dir")
