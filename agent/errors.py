"""The agent's exception tree.

    AgentError                 root of every error the agent raises on purpose
    ├── ConfigError            a configuration key with a bad or missing value (exit code 2 at start)
    ├── StoreError             the SQLite store cannot do what was asked (full disk, corrupt file, ...)
    ├── LinkError              a BLE link problem that the caller must see
    ├── BrokerError            the MQTT broker refused or could not be reached
    └── ModelError             a model bundle cannot be used (missing, bad hash, bad spec, no runtime)

Third-party errors are wrapped at the boundary with ``raise ... from exc`` so callers need only these.
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of the agent's errors."""


class ConfigError(AgentError):
    """A configuration value is missing or invalid.

    ``key`` is the dotted path of the offending key (``wearers[0].thresholds.glucose_low``), ``value`` the value
    found (``None`` when missing) and ``problem`` what is wrong with it, in words.
    """

    def __init__(self, key: str, value: object, problem: str) -> None:
        self.key = key
        self.value = value
        self.problem = problem
        super().__init__(f"config: {key} = {value!r}: {problem}")


class StoreError(AgentError):
    """The store failed; ``operation`` names what was being done, ``full`` says the disk or the database's
    size limit is the cause (the agent then keeps alerting from memory and retries)."""

    def __init__(self, operation: str, reason: str, *, full: bool = False) -> None:
        self.operation = operation
        self.reason = reason
        self.full = full
        super().__init__(f"store: {operation}: {reason}")


class LinkError(AgentError):
    """A BLE link failed; ``device`` names the configured device."""

    def __init__(self, device: str, reason: str) -> None:
        self.device = device
        self.reason = reason
        super().__init__(f"link {device}: {reason}")


class BrokerError(AgentError):
    """The MQTT broker could not be used."""

    def __init__(self, broker: str, reason: str) -> None:
        self.broker = broker
        self.reason = reason
        super().__init__(f"broker {broker}: {reason}")


class ModelError(AgentError):
    """A model bundle cannot be used; ``model`` is its name."""

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason
        super().__init__(f"model {model}: {reason}")
