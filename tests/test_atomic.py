"""mathverify.atomic: the one atomic-write rule of checkpoints, submissions and exports."""

import stat

import pytest

from mathverify.atomic import atomic_file, atomic_folder


def test_atomic_file_replaces_whole_or_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "out.csv"
    with atomic_file(path, "w", newline="") as out:
        out.write("ID,is_correct\n0,True\n")
    assert path.read_text() == "ID,is_correct\n0,True\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # an ordinary file, not mkstemp's 0600
    with pytest.raises(RuntimeError):
        with atomic_file(path, "w") as out:
            out.write("half a fi")
            raise RuntimeError("killed")
    assert path.read_text() == "ID,is_correct\n0,True\n"
    assert [p.name for p in path.parent.iterdir()] == ["out.csv"]  # no temporary left behind


def test_atomic_folder_replaces_only_a_complete_folder(tmp_path):
    target = tmp_path / "adapter"
    with atomic_folder(target) as tmp:
        (tmp / "a.json").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(target) as tmp:
            (tmp / "b.json").write_text("2")
            raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["a.json"]
    with atomic_folder(target) as tmp:
        (tmp / "c.json").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
