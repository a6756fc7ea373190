"""The language a person reads at the station: 简体中文 or English, through gettext.

Messages are written in English in the code and marked where they are written: ``_("...")``
for one message, ``ngettext(singular, plural, n)`` where the count changes the words,
``N_("...")`` for a module-level constant translated later with ``_(CONSTANT)``. Values go in
by name, so a translator sees and may reorder them: ``_("cannot read {path}").format(path=p)``.
The catalogue (message domain ``evidence-daemon``) is ``locale/<lang>/LC_MESSAGES/
evidence-daemon.po``; the ``.mo`` files are compiled from it when the package is built
(``setup.py``) and by ``scripts/test`` for the development tree — never checked in.

``use()`` picks the language once, in ``cli.main`` (``--lang``, else ``station.language``,
``auto`` = the locale in LC_ALL / LC_MESSAGES / LANG). Without a compiled catalogue the station
speaks English, silently: a missing translation never stops a command.

What this module must never do: translate a machine interface. ``--json`` output, metric names,
ledger events and their details, manifests, exit codes, config keys and file names stay as they
are. A translated text remembers its English source (``untranslated``), so an error message
recorded in the ledger, a manifest or the database is the English one whatever the operator
reads.
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

DOMAIN: Final = "evidence-daemon"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
LANGUAGES: Final = ("en", "zh_CN")
Language = Literal["auto", "en", "zh_CN"]

_translation: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


class Message(str):
    """A translated text that keeps its English source for records that must stay English."""

    source: str

    def __new__(cls, text: str, source: str) -> Message:
        message = super().__new__(cls, text)
        message.source = source
        return message

    def format(self, *args: Any, **kwargs: Any) -> Message:
        return Message(str.format(self, *args, **kwargs),
                       self.source.format(*map(untranslated, args),
                                          **{name: untranslated(value)
                                             for name, value in kwargs.items()}))

    def __mod__(self, values: Any) -> Message:
        english = (tuple(map(untranslated, values)) if isinstance(values, tuple)
                   else untranslated(values))
        return Message(str.__mod__(self, values), self.source % english)


def untranslated(value: Any) -> Any:
    """The English source of a translated text; anything else as it is."""
    return value.source if isinstance(value, Message) else value


def _(message: str) -> str:
    """``message`` in the station's language (English when there is no translation)."""
    return Message(_translation.gettext(message), message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form of a message that fits ``count``, in the station's language."""
    return Message(_translation.ngettext(singular, plural, count),
                   singular if count == 1 else plural)


def N_(message: str) -> str:
    """Marks a constant for the catalogue; translate it where it is shown, with ``_()``."""
    return message


def language_from_environment(environ: Mapping[str, str]) -> str:
    """The station's language from the POSIX locale variables (pure).

    The first set of LC_ALL, LC_MESSAGES, LANG decides, as for every program: any Chinese
    locale of the mainland or Singapore (``zh_CN.UTF-8``, ``zh_SG``, ``zh``) is ``zh_CN``;
    everything else, ``C`` and ``POSIX`` included, is English.
    """
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            return _language_of(value)
    return "en"


def _language_of(locale_name: str) -> str:
    base = locale_name.split(".", 1)[0].split("@", 1)[0].replace("-", "_").lower()
    if base in ("zh", "zh_cn", "zh_sg", "zh_hans", "zh_hans_cn"):
        return "zh_CN"
    return "en"


def use(language: str, environ: Mapping[str, str] | None = None) -> str:
    """Speak ``language`` (``auto``, ``en`` or ``zh_CN``) from now on; returns the one chosen."""
    import os

    global _translation, _language
    chosen = language_from_environment(os.environ if environ is None else environ) \
        if language == "auto" else language
    if chosen not in LANGUAGES:
        chosen = "en"
    _translation = gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[chosen],
                                       fallback=True)
    _language = chosen
    return chosen


def current_language() -> str:
    return _language


def catalogue_installed(language: str) -> bool:
    """Whether the compiled catalogue of ``language`` is present (English needs none)."""
    return language == "en" or (LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo").is_file()


def word(value: object) -> str:
    """A state or kind shown to a person (``on_time`` -> "on time" / "按时"); the stored and
    ``--json`` value stays the identifier."""
    return _(str(value).replace("_", " "))


# The words ``word()`` translates, for the catalogue: queue, compliance, proxy, coverage and
# dock-job states, and the kinds of dock job.
_VOCABULARY = (
    N_("discovered"), N_("spooled"), N_("archived"), N_("duplicate"), N_("failed"),
    N_("skipped"), N_("on time"), N_("late"), N_("pending"), N_("at risk"), N_("overdue"),
    N_("running"), N_("done"), N_("unplayable"), N_("covered"), N_("partial"), N_("missing"),
    N_("waiting"), N_("settling"), N_("mounting"), N_("ingesting"), N_("wiping"),
    N_("incomplete"), N_("device"), N_("inbox"), N_("officer"), N_("station"), N_("type"),
    N_("kept on device"), N_("wiped"), N_("recorder"), N_("terminal"),
    N_("api"),
)
