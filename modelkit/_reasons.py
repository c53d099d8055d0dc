"""Runtime error messages made fit to show: one readable line, without the runtime's internals.

onnxruntime (and other native runtimes) put their build's source paths, line numbers, C++
function signatures and sometimes a stack in their messages, before the reason. Users, logs and
HTTP clients need the reason; the internals tell an attacker about the build and hide the reason
behind a length cap.
"""

from __future__ import annotations

import re

__all__ = ["public_reason"]

# A runtime's message may carry its build's source paths, line numbers, function signatures and
# stack: "/onnxruntime_src/onnxruntime/core/.../reshape_helper.h:91 onnxruntime::ReshapeHelper::
# ReshapeHelper(const onnxruntime::TensorShape&, ...) input_shape_size == ... was false."
_SOURCE_LOCATION = re.compile(
    r"""(?:[A-Za-z]:)?[\w./\\+-]*[\w+-]\.(?:cc|cpp|cxx|c|h|hh|hpp|hxx|cu|py|pyx|rs|go|java|m|mm)
        (?::\d+)+:?""",
    re.VERBOSE,
)
# A qualified name, after at most one return type (itself qualified, or a basic type).
_SIGNATURE_HEAD = re.compile(
    r"""\s*(?:(?:[\w<>,*&~]*::[\w<>,*&~:]*|void|bool|int|float|double|size_t|auto)\s+)?
        [\w<>,*&~]*::[\w<>,*&~:]*\(""",
    re.VERBOSE,
)
_PYTHON_FRAME = re.compile(r'File "[^"]*", line \d+(?:, in [\w<>.]+)?')
_STACK_START = re.compile(r"(?:Traceback \(most recent call last\)|Stack trace:|\bStacktrace:)")
_RUNTIME_PREFIX = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_MAX_REASON = 300


def public_reason(text: str) -> str:
    """A runtime's message as one readable line without its internals: no source file paths or
    line numbers, no C++ function signatures, no stack."""
    stack = _STACK_START.search(text)
    if stack is not None:
        text = text[: stack.start()]
    text = _RUNTIME_PREFIX.sub("", text)
    text = _PYTHON_FRAME.sub("", text)
    parts = []
    position = 0
    for match in _SOURCE_LOCATION.finditer(text):
        parts.append(text[position : match.start()])
        position = _after_signature(text, match.end())
    parts.append(text[position:])
    line = " ".join("".join(parts).split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def _after_signature(text: str, start: int) -> int:
    """Where a C++ function signature right after a source location ends (``start`` if there
    is none): ``onnxruntime::common::Status onnxruntime::Foo::Bar(const Shape&, bool) const``."""
    head = _SIGNATURE_HEAD.match(text, start)
    if head is None:
        return start
    depth = 0
    for position in range(head.end() - 1, len(text)):
        if text[position] == "(":
            depth += 1
        elif text[position] == ")":
            depth -= 1
            if depth == 0:
                end = position + 1
                return end + 6 if text.startswith(" const", end) else end
    return start
