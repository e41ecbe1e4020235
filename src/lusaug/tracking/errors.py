"""The registry's errors: each says what is wrong and what to do (all are ``LusaugError``)."""

from __future__ import annotations

from lusaug.core.errors import LusaugError


class RegistryError(LusaugError, RuntimeError):
    """A registry operation that cannot proceed (bad version, nothing to roll back, ...)."""


class PromotionRefused(RegistryError):
    """A gate or the alias order failed; the message lists every failed check."""


class RegistryBusy(RegistryError):
    """Another live process holds the registry lock of this model; try again later."""


class RegistryConflict(RegistryError):
    """The alias moved while this command waited for the lock; re-run against the new holder."""
