from engine.backends.base import StopMatcher


def feed_all(stops, pieces):
    matcher = StopMatcher(stops)
    shown = "".join(matcher.feed(p) for p in pieces)
    if not matcher.stopped:
        shown += matcher.flush()
    return shown, matcher.stopped


def test_stop_split_over_pieces_is_cut_and_never_shown_half():
    matcher = StopMatcher(["\ndef "])
    shown = [matcher.feed(p) for p in ["x = 1", "\nde", "f foo"]]
    assert "".join(shown) == "x = 1"
    assert matcher.stopped
    assert "\n" not in shown[1]


def test_earliest_stop_wins():
    assert feed_all(["END", "\n"], ["ab\ncdEND"]) == ("ab", True)


def test_no_stop_releases_everything_at_flush():
    assert feed_all(["zzz"], ["hello ", "world", "zz"]) == ("hello worldzz", False)


def test_stop_at_the_very_start_gives_nothing():
    assert feed_all(["\n"], ["\nreturn"]) == ("", True)
