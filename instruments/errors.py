"""Typed errors every instrument driver raises, so protocols and the runner can decide per kind.

A campaign runs unattended: the runner has to tell "retry the step" (a timeout, a garbled reply) from
"stop the campaign" (a stalled pump, a safety limit) without parsing messages. Every driver therefore
raises one of these classes and nothing else for instrument trouble. Each error names *where* it happened
(device and/or port) and *what* happened, and prints as one line so the journal and the CLI can show it
as is.
"""


class InstrumentError(Exception):
    """Root of every instrument failure: `where` names the device/port, `what` says what happened."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        self.what = " ".join(what.split())  # one line, whatever the caller built
        super().__init__(f"{where}: {self.what}")


class InstrumentTimeout(InstrumentError):
    """No (complete) reply before the deadline; safe commands may be retried by the driver."""


class ProtocolError(InstrumentError):
    """A reply arrived but it is garbage, garbled, or not the reply this command expects."""


class DeviceError(InstrumentError):
    """The device answered with an error code (e.g. `?OOR`); `code` holds it verbatim."""

    def __init__(self, where: str, code: str, what: str) -> None:
        self.code = code
        super().__init__(where, f"device error {code}: {what}")


class PumpStalled(InstrumentError):
    """The pump reported a motor stall: the dispensed volume is unknown, a person should look."""


class Overload(InstrumentError):
    """The potentiostat reported a current overload: the measurement is not valid."""


class SafetyLimitExceeded(InstrumentError):
    """A request exceeds the configured safety limits; raised before any byte reaches the device."""


class Disconnected(InstrumentError):
    """The port vanished or could not be opened (cable pulled, USB adapter reset, emulator stopped)."""


class ConfigError(InstrumentError, ValueError):
    """A driver option or argument value the device cannot take (bad address, unrepresentable number)."""


class DispenseMismatch(InstrumentError):
    """The pump's own dispensed-volume counter disagrees with what was requested."""


class ReplayMismatch(InstrumentError):
    """A driver replayed against a wire capture wrote bytes the capture does not have at that point."""
