"""Evidence packages: one zip that a court, a defence expert or an auditor can check on their
own, without this system. Export writes it (``export_recordings``); ``verify_package`` checks it
offline. The modules, in the order a package is made and checked:

- ``format``: versions, member names, redaction stubs — the vocabulary both sides share;
- ``plan``: which recordings, files and ledger entries go in (catalog reads);
- ``prove``: a writer's entries proven against its newest signed checkpoint (format 3);
- ``readme`` and ``README.template.txt``: the bilingual README.txt;
- ``writer``: the zip members, and the crash-safe, create-only publish (``durable``);
- ``export``: ``export_recordings``, which records the export in the ledger, then writes;
- ``members``, ``verify_ledger``, ``verify``: reading a zip and checking it;
- ``report``: what verification found, and the CLI's lines.

Callers import from here; the names below are the package's public interface.
"""

from .export import PackageInfo, export_recordings, ledger_listing, package_json
from .format import (
    DERIVED_NAMES,
    FORMAT,
    FORMAT_VERSION,
    PACKAGE_JSON,
    PACKAGE_SIG,
    PROOFS_PREFIX,
    README_NAME,
    REDACTED_SUFFIX,
    STUB_FIELDS,
    SUPPORTED_FORMAT_VERSIONS,
    WRITABLE_FORMAT_VERSIONS,
    is_relevant,
    parse_proof_name,
    parse_redacted_key,
    parse_stub,
    proof_name,
    redacted_key,
    stub_bytes,
)
from .members import unsafe_member_name
from .plan import (
    Part,
    PlannedRecording,
    ledger_runs,
    merge_runs,
    plan_recording,
    proven_entries,
    resolve_recordings,
)
from .prove import ProvenWriter, checkpoint_own_chain, prove_writer
from .readme import readme_text
from .report import PackageReport, format_package_report
from .verify import verify_package

__all__ = [
    "DERIVED_NAMES", "FORMAT", "FORMAT_VERSION", "PACKAGE_JSON", "PACKAGE_SIG", "PROOFS_PREFIX",
    "README_NAME", "REDACTED_SUFFIX", "STUB_FIELDS", "SUPPORTED_FORMAT_VERSIONS",
    "WRITABLE_FORMAT_VERSIONS", "PackageInfo", "PackageReport", "Part", "PlannedRecording",
    "ProvenWriter", "checkpoint_own_chain", "export_recordings", "format_package_report",
    "is_relevant", "ledger_listing", "ledger_runs", "merge_runs", "package_json",
    "parse_proof_name", "parse_redacted_key", "parse_stub", "plan_recording", "proof_name",
    "proven_entries", "prove_writer", "readme_text", "redacted_key", "resolve_recordings",
    "stub_bytes", "unsafe_member_name", "verify_package",
]
