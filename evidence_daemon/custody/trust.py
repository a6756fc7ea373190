"""Trust anchors: the writers' key fingerprints a verifier believes, given out of band.

A key found in the archive's ``keys/`` (or a package's) proves nothing by itself: whoever can
write there can add a writer with a fresh key, or replace a station's key and re-sign its whole
chain. Only a fingerprint published elsewhere (printed, on the agency's site, in a trust file)
tells which keys are the agency's.

A trust file holds one fingerprint per line, ``SHA256:<base64>`` as ``verify`` and
``verify-package`` print them; anything after the fingerprint on its line (a writer id, a note)
and lines starting with ``#`` are ignored. It is what ``--trust FINGERPRINT`` takes one at a
time, and what ``[verify] trusted_keys`` names.

This module never trusts a key because of where it was found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..i18n import _


def normal_fingerprint(text: str) -> str:
    """``SHA256:<base64>`` as ``signing.fingerprint`` writes it, from what people paste: with
    or without the prefix, with the ``=`` padding openssl prints."""
    text = text.strip().removeprefix("SHA256:").rstrip("=")
    return f"SHA256:{text}"


@dataclass(frozen=True)
class TrustAnchors:
    """The fingerprints believed; empty means none were given (consistency checks only)."""

    fingerprints: frozenset[str] = frozenset()
    source: str = ""  # where they came from, for the report

    @property
    def configured(self) -> bool:
        return bool(self.fingerprints)

    def trusts(self, key_fingerprint: str) -> bool | None:
        """True or False; None when no anchors were given (nothing can be said)."""
        if not self.fingerprints:
            return None
        return normal_fingerprint(key_fingerprint) in self.fingerprints

    @classmethod
    def of(cls, fingerprints: Iterable[str], source: str = "--trust") -> TrustAnchors:
        found = frozenset(normal_fingerprint(text) for text in fingerprints if text.strip())
        return cls(found, source if found else "")

    def __or__(self, other: TrustAnchors) -> TrustAnchors:
        sources = ", ".join(part for part in (self.source, other.source) if part)
        return TrustAnchors(self.fingerprints | other.fingerprints, sources)


def parse_trust_file(text: str, *, source: str) -> TrustAnchors:
    """Fingerprints from a trust file's text; ``ConfigError`` naming the line of one that is
    not a fingerprint (a typo must not silently trust nothing, or something else)."""
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        candidate = words[0]
        body = candidate.removeprefix("SHA256:").rstrip("=")
        if not candidate.startswith("SHA256:") or len(body) != 43:
            raise ConfigError(_("{source}:{number}: {candidate!r} is not a key fingerprint "
                                "(SHA256:<base64>, as verify prints it)").format(
                                    source=source, number=number, candidate=candidate[:60]))
        found.append(candidate)
    if not found:
        raise ConfigError(_("{source}: no fingerprints in the trust file").format(source=source))
    return TrustAnchors.of(found, source)


def load_trust_file(path: Path, *, setting: str = "verify.trusted_keys") -> TrustAnchors:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(_("{setting}: cannot read trust file {path}: {strerror}").format(
            setting=setting, path=path, strerror=exc.strerror)) from exc
    except UnicodeDecodeError:
        raise ConfigError(_("{setting}: {path} is not a UTF-8 text file").format(
            setting=setting, path=path)) from None
    return parse_trust_file(text, source=str(path))


def anchors_from(fingerprints: Iterable[str], trust_file: Path | None) -> TrustAnchors:
    """``--trust`` values together with the configured trust file, if any."""
    anchors = TrustAnchors.of(list(fingerprints))
    if trust_file is not None:
        anchors = anchors | load_trust_file(trust_file)
    return anchors
