"""Reading text for the text tasks: strict UTF-8 files and directories, fortune files, CSV text columns.

Every reader decodes strictly: a file that is not valid UTF-8 raises :class:`lstmkit.errors.UserError` naming
the file and the byte offset of the first bad byte, e.g.
``notes.txt: invalid UTF-8 at byte offset 17 (invalid start byte); expected UTF-8 text``.

Fortune format (the BSD ``fortune`` collections bundled with lstmkit): entries separated by lines holding only
``%``. In a directory of such files the label of an entry is the name of its file.

The bundled corpus (:func:`bundled_text_dir`) is eight fortune collections by topic (art, definitions,
education, food, law, songs-poems, sports, work; 0.78 MB of English, BSD licence, see its COPYRIGHT-fortunes);
``lstmkit train lm`` and ``lstmkit train textclass`` use it when ``--data`` is not given.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import List, Optional, Tuple

from lstmkit.errors import UserError

#: File names skipped when reading a directory (case-insensitive prefixes) besides hidden files.
SKIP_PREFIXES = ("copyright", "license", "licence", "readme")

_SEPARATOR = re.compile(r"^%[ \t]*\r?$", re.MULTILINE)


def bundled_text_dir() -> Path:
    """The directory of the bundled fortune collections (``lstmkit/data/datasets/text``)."""
    return Path(__file__).resolve().parent / "datasets" / "text"


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` decoded as UTF-8 (a leading BOM dropped); UserError with the byte offset if invalid."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{name}: invalid UTF-8 at byte offset {exc.start} ({exc.reason}); "
                        f"expected UTF-8 text") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path) -> str:
    """The text of one UTF-8 file (UserError if missing, a directory or not UTF-8)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"--data={str(path)!r} does not exist")
    if p.is_dir():
        raise UserError(f"--data={str(path)!r} is a directory; expected a text file")
    return decode_utf8(p.read_bytes(), str(p))


def text_files(path) -> List[Path]:
    """The files to read for ``path``: itself if a file, else the directory's regular files sorted by name,
    skipping hidden files and COPYRIGHT*/LICENSE*/README* (UserError if there are none)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"--data={str(path)!r} does not exist")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                   and not f.name.lower().startswith(SKIP_PREFIXES))
    if not files:
        raise UserError(f"--data={str(path)!r} is a directory with no text files")
    return files


def read_text_tree(path) -> str:
    """All text under ``path`` (a file, or a directory's files in name order joined by newlines)."""
    parts = [read_text(f) for f in text_files(path)]
    return "\n".join(p if p.endswith("\n") or not p else p + "\n" for p in parts).rstrip("\n") + "\n"


def split_fortunes(text: str) -> List[str]:
    """The entries of a fortune file: pieces between lines holding only ``%``, stripped, empty ones dropped.

    >>> split_fortunes("one\\n%\\ntwo\\nlines\\n%\\n")
    ['one', 'two\\nlines']
    """
    return [e.strip("\n").rstrip() for e in _SEPARATOR.split(text) if e.strip()]


def read_fortune_dir(path) -> Tuple[List[str], List[str]]:
    """(entries, labels) of every fortune file in directory ``path``; the label is the file name."""
    texts: List[str] = []
    labels: List[str] = []
    for f in text_files(path):
        entries = split_fortunes(read_text(f))
        texts += entries
        labels += [f.name] * len(entries)
    if not texts:
        raise UserError(f"--data={str(path)!r}: no entries found (fortune files: entries separated by lines "
                        f"holding only '%')")
    return texts, labels


def read_csv_texts(path, text_col: str = "text", label_col: Optional[str] = "label",
                   require_label: bool = True) -> Tuple[List[str], Optional[List[str]]]:
    """(texts, labels) from a UTF-8 CSV file with a header row.

    Args:
        path: the CSV file.
        text_col: header of the text column.
        label_col: header of the label column (None or absent with ``require_label=False``: labels None).
        require_label: raise UserError when the label column is missing.
    """
    raw = read_text(path)
    reader = csv.DictReader(io.StringIO(raw, newline=""))
    header = reader.fieldnames or []
    if text_col not in header:
        raise UserError(f"--text-col={text_col!r} is not a column of {path}; columns are {header}")
    has_label = label_col is not None and label_col in header
    if require_label and not has_label:
        raise UserError(f"--label-col={label_col!r} is not a column of {path}; columns are {header}")
    texts, labels = [], []
    for i, row in enumerate(reader, start=2):
        t = row.get(text_col)
        if t is None:
            raise UserError(f"{path}: line {i} has too few fields (no {text_col!r} value)")
        texts.append(t)
        if has_label:
            lab = row.get(label_col)
            if lab is None or lab == "":
                raise UserError(f"{path}: line {i} has an empty {label_col!r} label")
            labels.append(lab)
    if not texts:
        raise UserError(f"{path}: no rows after the header")
    return texts, (labels if has_label else None)


def read_labelled(path, text_col: str = "text", label_col: str = "label") -> Tuple[List[str], List[str]]:
    """Labelled texts from a CSV file or a directory of fortune files (label = file name)."""
    if Path(path).is_dir():
        return read_fortune_dir(path)
    texts, labels = read_csv_texts(path, text_col, label_col)
    assert labels is not None
    return texts, labels


def read_unlabelled(path, text_col: str = "text") -> List[str]:
    """Texts to label: a CSV with ``text_col`` in its header, else one text per non-empty line."""
    p = Path(path)
    if p.is_dir():
        return read_fortune_dir(p)[0]
    raw = read_text(p)
    first = raw.split("\n", 1)[0]
    if p.suffix.lower() == ".csv" or text_col in next(csv.reader([first]), []):
        return read_csv_texts(p, text_col, None, require_label=False)[0]
    lines = [ln.rstrip("\r") for ln in raw.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise UserError(f"--data={str(path)!r} holds no text lines")
    return lines
