"""The classify benchmark's profile split: py-spy's collapsed stacks sorted into phases."""

from __future__ import annotations

import inspect

from benchmarks.bench_classify import split_profile
from consumers.classify_runner import classify_stream

HEAD = "<module> (multichannel:10);classify_command (cli/classify.py:53)"


def _line_of(text: str) -> int:
    source, first = inspect.getsourcelines(classify_stream)
    return first + next(i for i, line in enumerate(source) if text in line)


def _stream(line: int) -> str:
    return f"classify_stream (consumers/classify_runner.py:{line})"


def test_samples_are_split_by_the_call_under_classify_stream_or_by_its_own_line() -> None:
    """Profile samples are attributed to a phase by the call under classify_stream, or by its own line."""
    apply_line = _line_of("apply(event, clock)")
    rows = [
        f"{HEAD};{_stream(apply_line)};Classifier.apply (multichannel/engine.py:83);Classifier._evaluate (x.py:1) 7",
        f"{HEAD};{_stream(_line_of('fire_due(clock)'))};Classifier.fire_due (multichannel/engine.py:190) 1",
        f"{HEAD};{_stream(_line_of('parse_event(obj)'))};parse_event (multichannel/parse.py:200);_id (p.py:3) 5",
        f"{HEAD};{_stream(_line_of('map(to_json, records)'))};record_to_json (consumers/classify_runner.py:50) 4",
        f"{HEAD};{_stream(_line_of('orjson.loads(raw)'))} 3",
        f"{HEAD};{_stream(_line_of('in enumerate(lines'))} 2",
        f"{HEAD};{_stream(_line_of('out.write('))} 2",
        f"{HEAD};{_stream(_line_of('freeze_survivors()'))};freeze_survivors (consumers/runtime.py:24) 1",
        f"{HEAD};{_stream(apply_line)} 1",
        "<module> (multichannel:10);import_module (importlib/__init__.py:126) 50",
    ]
    samples = split_profile("\n".join(rows))
    assert dict(samples) == {
        "engine": 8,
        "validation": 5,
        "output_formatting": 4,
        "json_decode": 3,
        "input_output": 4,
        "loop": 2,
    }
