"""Acceptance counts (lsp_server/acceptance.py) as units: following an accepted text through
edits, what is counted, and the shared stats file that holds counts and nothing else."""

from __future__ import annotations

import json

from lsp_server.acceptance import Acceptance, Followed, read_stats, table

DOC = "def f(x):\n    return \n"
TEXT = "x * 2"
AT = DOC.index("return ") + len("return ")


def test_a_followed_text_moves_with_edits_before_it_and_takes_in_edits_inside_it():
    followed = Followed("u", "python", TEXT, 10, 15)
    followed.edit(20, 20, 3)  # after it: nothing moves
    assert (followed.start, followed.end) == (10, 15)
    followed.edit(0, 2, 5)  # before it: +3
    assert (followed.start, followed.end) == (13, 18)
    followed.edit(15, 16, 0)  # inside: the region shrinks with the text
    assert (followed.start, followed.end) == (13, 17)


def test_what_is_kept_is_the_accepted_characters_still_there_in_order():
    followed = Followed("u", "python", TEXT, AT, AT + len(TEXT))
    document = DOC[:AT] + TEXT + DOC[AT:]
    assert followed.retained(document) == len(TEXT)
    edited = DOC[:AT] + "x * 3" + DOC[AT:]  # one character changed
    assert followed.retained(edited) == len(TEXT) - 1


def test_shown_accepted_kept_and_saved_are_counted_per_language(tmp_path):
    documents = {"file:///a.py": DOC}
    counts = Acceptance(tmp_path / "stats.json", documents.get)
    item = counts.shown("file:///a.py", "python", TEXT, AT)
    counts.shown("file:///a.js", "javascript", "y", 0)
    counts.shown("file:///a.py", "python", TEXT[1:], AT + 1, new=False)  # typed through: not shown anew
    assert counts.accepted("unknown-id") is None
    followed = counts.accepted(item, length=3)  # a partial accept: "x *"
    assert followed is not None and followed.text == "x *" and followed.awaiting_insert  # not inserted yet
    assert counts.accepted(item) is None  # one accept per suggestion shown
    documents["file:///a.py"] = DOC[:AT] + "x *" + DOC[AT:]
    counts.edited("file:///a.py", [(AT, AT, 3)])  # the insertion arrives after the accept
    assert (followed.start, followed.end, followed.awaiting_insert) == (AT, AT + 3, False)
    counts.edited("file:///a.py", [(0, 0, 1)])  # a line added above moves it
    documents["file:///a.py"] = "\n" + documents["file:///a.py"]
    counts.check(followed, documents["file:///a.py"], "30s")
    counts.saved("file:///a.py", documents["file:///a.py"])
    counts.check(followed, documents["file:///a.py"], "30s")  # once only
    assert counts.summary() == {
        "javascript": {"shown": 1, "accepted": 0, "acceptedChars": 0, "retainedChars30s": 0, "checkedChars30s": 0,
                       "retainedCharsAtSave": 0, "checkedCharsAtSave": 0},
        "python": {"shown": 1, "accepted": 1, "acceptedChars": 3, "retainedChars30s": 3, "checkedChars30s": 3,
                   "retainedCharsAtSave": 3, "checkedCharsAtSave": 3},
    }


def test_the_stats_file_holds_counts_only_and_servers_add_to_it(tmp_path):
    path = tmp_path / "stats.json"
    first, second = Acceptance(path), Acceptance(path)
    secret = "launch_codes_0451"
    accepted = first.accepted(first.shown("file:///secret/plan.py", "python", secret, 0))
    assert accepted is not None
    second.shown("file:///x.py", "python", "y = 1", 0)
    second.save()
    written = path.read_text()
    assert secret not in written and "plan.py" not in written and "file://" not in written
    assert json.loads(written)["languages"]["python"]["shown"] == 2  # both servers' counts
    assert read_stats(path)["python"].accepted == 1
    assert "python" in table(Acceptance(path).summary())


def test_a_closed_document_counts_what_it_held_at_the_close(tmp_path):
    documents = {"file:///a.py": DOC[:AT] + TEXT + DOC[AT:]}
    counts = Acceptance(None, documents.get)
    followed = counts.accepted(counts.shown("file:///a.py", "python", TEXT, AT))
    assert followed is not None and not followed.awaiting_insert  # the editor inserted it first
    counts.saved("file:///a.py", documents["file:///a.py"], closed=True)
    python = counts.summary()["python"]
    assert python["retainedChars30s"] == python["retainedCharsAtSave"] == len(TEXT)


def test_an_unreadable_stats_file_counts_from_zero(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text("{not json")
    assert read_stats(path) == {}
    counts = Acceptance(path)
    counts.shown("file:///a.py", "python", "z", 0)
    counts.save()
    assert read_stats(path)["python"].shown == 1


def test_a_planted_lock_link_is_not_followed_and_languages_are_ids_not_text(tmp_path):
    """stats.lock → a file of the user's: the save does not empty it (and counts nothing through
    it). A client's language id that is not one ("../../x", a line of code) is counted as "other"."""
    victim = tmp_path / "notes.txt"
    victim.write_text("keep me")
    path = tmp_path / "stats.json"
    (tmp_path / "stats.lock").symlink_to(victim)
    counts = Acceptance(path)
    counts.shown("file:///a.py", "python", "z", 0)
    counts.save()
    assert victim.read_text() == "keep me" and not path.exists()  # refused, counts kept for later
    (tmp_path / "stats.lock").unlink()
    counts.shown("file:///a.py", "x = secret_value()\n", "z", 0)
    counts.shown("file:///a.py", "../../etc", "z", 0)
    counts.save()
    assert read_stats(path)["python"].shown == 1 and read_stats(path)["other"].shown == 2
    assert "secret_value" not in path.read_text()
    path.write_text(json.dumps({"version": 1, "languages": {"<script>": {"shown": 5}, "python": {"shown": 1}}}))
    assert sorted(read_stats(path)) == ["other", "python"]
