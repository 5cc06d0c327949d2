"""StopStringStream: what is streamed always equals what is returned."""

from __future__ import annotations

import pytest

from slm_eval.backends.streaming import StopStringStream


def run(pieces: list[str], stops: list[str]) -> tuple[str, str, bool]:
    sent: list[str] = []
    stream = StopStringStream(stops, sent.append)
    stopped = False
    for piece in pieces:
        stopped = stream.push(piece)
        if stopped:
            break
    text = stream.finish()
    return text, "".join(sent), stopped


def test_without_stops_every_piece_passes_at_once() -> None:
    sent: list[str] = []
    stream = StopStringStream([], sent.append)
    stream.push("A ")
    assert sent == ["A "]
    stream.push("visa")
    assert sent == ["A ", "visa"]
    assert stream.finish() == "A visa"


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["A vis", "a E", "N", "D more"], ["END"], "A visa "),  # stop spans three pieces
        (["one", " two\n\n", "three"], ["\n\n"], "one two"),  # stop inside one piece
        (["ab x", "y q"], ["xyz"], "ab xy q"),  # a false start is released at the end
        (["Q: a", "\nQ: b"], ["\nQ:", "END"], "Q: a"),  # the earliest of several stops
    ],
)
def test_streamed_text_equals_returned_text(pieces: list[str], stops: list[str], expected: str) -> None:
    text, streamed, _ = run(pieces, stops)
    assert text == expected
    assert streamed == expected


def test_push_reports_the_stop_and_ignores_later_pieces() -> None:
    sent: list[str] = []
    stream = StopStringStream(["STOP"], sent.append)
    assert stream.push("go STOP now") is True
    assert stream.push("more") is True
    assert stream.finish() == "go "
    assert "".join(sent) == "go "


def test_text_that_may_start_a_stop_is_held_back_until_it_cannot() -> None:
    sent: list[str] = []
    stream = StopStringStream(["</answer>"], sent.append)
    stream.push("Lisbon</ans")
    assert "".join(sent) == "Lisbon"
    stream.push("wered")
    assert "".join(sent) == "Lisbon</answered"
