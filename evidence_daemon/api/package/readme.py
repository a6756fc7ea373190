"""README.txt of a package: plain language, English then Chinese, telling a court or an expert
what the package holds and how to check it by hand. The text is the package-data template
``README.template.txt`` (``string.Template``: ``${name}`` fields), filled here; the paragraphs
that depend on the format version and on counts are below.

What must never happen here: a README that states another count of redacted or unproven
entries than the package holds, or names another key than the exporter's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from string import Template

from .format import FORMAT_VERSION
from .plan import PlannedRecording

TEMPLATE_NAME = "README.template.txt"


@cache
def readme_template() -> Template:
    """The README template shipped as package data (``[tool.setuptools.package-data]``)."""
    return Template(resources.files(__name__.rpartition(".")[0]).joinpath(TEMPLATE_NAME).read_text("utf-8"))


def readme_text(
    *,
    package_id: str,
    created_at: str,
    actor: str,
    reason: str,
    exporter: Mapping[str, str],
    planned: Sequence[PlannedRecording],
    fingerprints: Mapping[str, str],
    redacted_count: int = 0,
    format_version: int = FORMAT_VERSION,
    uncovered_count: int = 0,
) -> str:
    writer = exporter["writer"]
    example = planned[0].original.key if planned else "recordings/<id>/original.mp4"
    recordings_en = "\n".join(
        f"  - {plan.sha256}\n    {plan.original.key}, {plan.original.size_bytes} bytes; "
        f"device {plan.facts.get('device_id') or '?'}, officer {plan.facts.get('officer_id') or '?'}, "
        f"recorded {plan.facts.get('recorded_start') or 'unknown'}"
        for plan in planned
    )
    recordings_zh = "\n".join(
        f"  - {plan.sha256}\n    {plan.original.key}，{plan.original.size_bytes} 字节；"
        f"设备 {plan.facts.get('device_id') or '?'}，警员 {plan.facts.get('officer_id') or '?'}，"
        f"录制时间 {plan.facts.get('recorded_start') or '未知'}"
        for plan in planned
    )
    keys_list = "\n".join(f"  {name:<24} {value}" for name, value in fingerprints.items())
    if format_version == 3:
        steps_en, steps_zh = _proof_steps(writer)
        others_en, others_zh = _proof_notes(uncovered_count)
    else:
        steps_en, steps_zh = _stub_steps()
        others_en, others_zh = _redaction_notes(redacted_count)
    return readme_template().substitute(
        package_id=package_id, created_at=created_at, actor=actor, reason=reason,
        writer=writer, fingerprint=exporter["fingerprint"], example=example,
        recordings_en=recordings_en, recordings_zh=recordings_zh, keys_list=keys_list,
        steps_en=steps_en, steps_zh=steps_zh, others_en=others_en, others_zh=others_zh)


def _stub_steps() -> tuple[str, str]:
    """README steps d-e (English, Chinese) of a version-2 package: runs with stubs."""
    return ("""   d. Each file ledger/<writer>/<number>.json is one custody event, signed by
      its writer (the station or API node named in its path) with the key in
      keys/. Each event's "prev" is the SHA-256 of the one before, so none can
      be removed or changed without breaking the chain.
   e. A file ledger/<writer>/<number>.redacted.json is not signed: it stands
      for an entry about another recording, and holds only that entry's
      SHA-256 ("entry_hash") and its "prev". The next entry's "prev" must
      equal its "entry_hash".""",
            """   d. 每个 ledger/<写入方>/<序号>.json 文件是一条保管事件，由其写入方
      （路径中的工作站或 API 节点）用 keys/ 中的密钥签名。每条事件的
      "prev" 是前一条的 SHA-256，任何一条被删除或修改都会使链条断开。
   e. ledger/<写入方>/<序号>.redacted.json 文件没有签名：它代表一条涉及
      其他录像的记录，只含该记录的 SHA-256（"entry_hash"）及其 "prev"。
      下一条记录的 "prev" 必须等于它的 "entry_hash"。""")


def _proof_steps(exporter: str) -> tuple[str, str]:
    """README steps d-f (English, Chinese) of a version-3 package: inclusion proofs."""
    return (f"""   d. Each file ledger/<writer>/<number>.json is one custody event, signed by
      its writer (the station or API node named in its path) with the key in
      keys/. A writer's "key-registered" event names its role: stations sign
      acquisition, archival and viewing copies; API nodes sign views and
      exports. An event outside its writer's role does not count.
   e. A "checkpoint" event is its writer's signed summary of its whole chain
      at that moment: the number of events ("tree_size") and the root of a
      Merkle tree over their hashes ("root_hash", RFC 9162). Each file
      proofs/<writer>/<number>.json proves that event <number> is in that
      tree: start from SHA-256(0x00 || SHA-256 of the event's signed bytes),
      combine it with each hash of "audit_path" as RFC 9162 section 2.1.3.2
      says, and the result must be the checkpoint's "root_hash". The number
      of events comes from the signed checkpoint, never from the proof. The
      exporting node ({exporter}) signed a checkpoint of its own chain right
      after recording this export.
   f. A file checkpoints/<writer>/<number>.tsr, when present, is an RFC 3161
      timestamp from a time-stamping authority over that checkpoint's signed
      bytes; `evidence-daemon verify-package --tsa-cert TSA.pem` checks it.""",
            f"""   d. 每个 ledger/<写入方>/<序号>.json 文件是一条保管事件，由其写入方
      （路径中的工作站或 API 节点）用 keys/ 中的密钥签名。写入方的
      "key-registered" 事件载明其角色：工作站签署采集、归档和浏览副本事件；
      API 节点签署查看和导出事件。超出写入方角色的事件不予采信。
   e. "checkpoint"（检查点）事件是写入方对其整条链在当时状态的签名摘要：
      事件数（"tree_size"）以及各事件哈希构成的默克尔树的根（"root_hash"，
      RFC 9162）。每个 proofs/<写入方>/<序号>.json 文件证明第 <序号> 条
      事件在该树中：从 SHA-256(0x00 || 该事件签名字节的 SHA-256) 开始，
      按 RFC 9162 第 2.1.3.2 节依次与 "audit_path" 中的各哈希值合并，
      结果必须等于检查点的 "root_hash"。事件数取自经签名的检查点，
      绝不取自证明文件。导出节点（{exporter}）在记录本次导出后立即对其
      自身的链签署了检查点。
   f. checkpoints/<写入方>/<序号>.tsr 文件（如有）是时间戳服务机构对该
      检查点签名字节出具的 RFC 3161 可信时间戳；可用
      `evidence-daemon verify-package --tsa-cert TSA.pem` 核验。""")


def _proof_notes(uncovered: int) -> tuple[str, str]:
    """README paragraphs (English, Chinese) on what a version-3 package leaves out."""
    english = (
        "None are included. This package holds only the ledger events about its\n"
        "own recordings and its export, each with a proof of a few dozen hashes\n"
        "that it belongs to its writer's signed chain: nothing about any other\n"
        "case, however long the chain.")
    chinese = (
        "本证据包不含任何此类记录。它只收录与本包录像及本次导出有关的台账事件，\n"
        "每条附有数十个哈希值组成的证明，证明该事件属于其写入方经签名的链条；\n"
        "无论链条多长，均不涉及其他案件的任何内容。")
    if uncovered:
        english += (
            f"\n\n{uncovered} {'event was' if uncovered == 1 else 'events were'} written after "
            "the newest checkpoint of its\nwriter: the signature shows who wrote it, but no "
            "proof ties it to the\nwriter's chain yet. verify-package lists them.")
        chinese += (
            f"\n\n有 {uncovered} 条事件写于其写入方最新检查点之后：签名表明由谁写入，\n"
            "但尚无证明将其与写入方的链条关联。verify-package 会逐条列出。")
    return english, chinese


def _redaction_notes(count: int) -> tuple[str, str]:
    """README paragraphs (English, Chinese) on the entries shown only by their hashes."""
    if count == 0:
        return ("Every ledger entry in this package is included in full; none was\n"
                "redacted.",
                "本证据包中的每条台账记录均完整收录，没有隐去任何记录。")
    if count == 1:
        english = (
            "1 entry about another recording is shown only by its hash; the signed\n"
            "entries around it prove its place in the chain, and the exporting API\n"
            "node's signature on package.json vouches that it concerns no recording in\n"
            "this package. The agency can show the full entry from the archive to a\n"
            "court if asked. A hash cannot show or prove what the hidden entry says."
        )
    else:
        english = (
            f"{count} entries about other recordings are shown only by their hashes; the\n"
            "signed entries around them prove their place in the chain, and the\n"
            "exporting API node's signature on package.json vouches that they concern\n"
            "no recording in this package. The agency can show the full entries from\n"
            "the archive to a court if asked. A hash cannot show or prove what a\n"
            "hidden entry says."
        )
    it = "它" if count == 1 else "它们"
    chinese = (
        f"{count} 条涉及其他录像的台账记录仅以其哈希值显示；其前后经签名的\n"
        f"记录证明了{it}在链条中的位置，导出 API 节点对 package.json 的签名\n"
        f"担保{it}不涉及本证据包中的任何录像。如有需要，本单位可向法庭出示\n"
        "存档中的完整记录。哈希值本身无法显示或证明被隐去记录的内容。"
    )
    return english, chinese

