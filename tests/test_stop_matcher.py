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


class _Clock:
    """A deadline whose state the test sets: past the budget, and past the grace or not."""

    def __init__(self, expired: bool, past_grace: bool) -> None:
        self.state = (expired, past_grace)

    def expired(self, grace: float = 0.0) -> bool:
        return self.state[1] if grace else self.state[0]


def test_the_budget_waits_for_an_unfinished_answer_within_its_grace():
    from engine.backends.base import GenerationRequest, TextSink
    from engine.prompt import Prompt

    request = GenerationRequest(prompt=Prompt((), "fim"), unfinished=lambda text: text.endswith(":\n"))
    sink = TextSink(request, None)
    sink.add("if ready:\n")
    assert sink.after_token(3, 100, _Clock(expired=True, past_grace=False)) == ""  # a header: go on
    assert sink.after_token(3, 100, _Clock(expired=True, past_grace=True)) == "time_budget"  # not forever
    sink.add("    go()\n")
    assert sink.after_token(5, 100, _Clock(expired=True, past_grace=False)) == "time_budget"  # the body came
