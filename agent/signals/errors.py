"""The error the signal code raises: an invalid parameter or input, named with its value.

``SignalError`` is an ``AgentError`` (see ``agent.errors``), so the daemon's one ``except AgentError`` covers it.
Numerical edge cases (too few matches for an entropy, a window with gaps) are not errors: they come back as
NaN or as quality figures, because on a live stream they are ordinary.
"""

from __future__ import annotations

from agent.errors import AgentError


class SignalError(AgentError):
    """A parameter or input the signal code cannot use.

    ``parameter`` names it (``"n_beats"``, ``"t_s"``), ``value`` is what was given (arrays are summarised by
    their shape) and ``problem`` says what is wrong, in words.
    """

    def __init__(self, parameter: str, value: object, problem: str) -> None:
        self.parameter = parameter
        self.value = value
        self.problem = problem
        super().__init__(f"signals: {parameter} = {value!r}: {problem}")
