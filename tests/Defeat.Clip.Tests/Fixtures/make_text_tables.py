"""Writes src/Defeat.Clip/Tokenization/ClipTextTables.g.cs: the character data ClipTextCleaner and
ClipTokenizer need to reproduce CLIP's reference tokenizer exactly.

Every table is measured here by asking the reference modules about each code point; nothing is
copied from their source:
  - Python's str.lower() (full case mapping) and the two properties its final-sigma rule reads
    (cased, case-ignorable), found by probing lower() with a capital sigma in context;
  - Python's str.isspace() and the `re` module's \\w and \\d (ftfy's regular expressions use them);
  - the `regex` module's \\s and CLIP's pattern classes [\\p{L}], [\\p{N}], [^\\s\\p{L}\\p{N}] under
    IGNORECASE, and which characters match the ASCII letters of CLIP's literals case-insensitively;
  - ftfy's character categories (badness heuristic, UTF-8 clues, width map, ligatures, control
    characters, upper-case entities) evaluated as character classes, and its single-byte codecs;
  - the HTML5 entity table and the invalid character references of Python's html module.

Run (ftfy's source on the path; Debian's python3-regex):

    PYTHONPATH=/path/to/python-ftfy /usr/bin/python3 make_text_tables.py [out.cs]

Measured with Python 3.11.2 (Unicode 14.0.0), regex 2022.10.31 and ftfy 6.3.1.
"""
import html
import html.entities
import os
import re
import sys
import unicodedata

import regex

import ftfy
import ftfy.bad_codecs  # registers the sloppy codecs and utf-8-variants
from ftfy import badness, chardata

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "src", "Defeat.Clip", "Tokenization",
    "ClipTextTables.g.cs")

CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
BMP = [cp for cp in CODE_POINTS if cp < 0x10000]


def ranges(cps):
    """Sorted code points -> [start, end, start, end, ...] (inclusive)."""
    out = []
    for cp in sorted(cps):
        if out and out[-1] == cp - 1:
            out[-1] = cp
        else:
            out += [cp, cp]
    return out


def members(predicate, domain=CODE_POINTS):
    return [cp for cp in domain if predicate(chr(cp))]


def cs_char(c):
    o = ord(c)
    if 0x20 <= o < 0x7F and c not in "\\\"":
        return c
    if o >= 0xA0 and unicodedata.category(c)[0] in "LNSP" and o not in (0xAD,):
        return c
    if o < 0x10000:
        return "\\u%04X" % o
    return "\\U%08X" % o


def cs_string(s):
    return '"' + "".join(cs_char(c) for c in s) + '"'


def cs_ints(values, per_line=16, indent="        "):
    lines = []
    for i in range(0, len(values), per_line):
        lines.append(indent + ", ".join("0x%X" % v for v in values[i:i + per_line]) + ",")
    return "\n".join(lines)


out = []
w = out.append

# ---------------------------------------------------------------- lower case
lower_single, lower_multi = {}, {}
for cp in CODE_POINTS:
    if cp == 0x3A3:
        continue  # capital sigma depends on its context; handled in code
    low = chr(cp).lower()
    if low != chr(cp):
        if len(low) == 1:
            lower_single[cp] = ord(low)
        else:
            lower_multi[cp] = low
assert chr(0x3A3).lower() == "\u03c3" and ("A" + chr(0x3A3)).lower() == "a\u03c2"

# Runs of (first, count, stride, delta): cp = first + k*stride maps to cp + delta.
runs = []
for cp in sorted(lower_single):
    delta = lower_single[cp] - cp
    if runs:
        first, count, stride, d = runs[-1]
        last = first + (count - 1) * stride
        if d == delta and ((count == 1 and cp - last in (1, 2)) or (count > 1 and cp - last == stride)):
            runs[-1] = (first, count + 1, cp - last if count == 1 else stride, d)
            continue
    runs.append((cp, 1, 1, delta))
check = {}
for first, count, stride, delta in runs:
    for k in range(count):
        check[first + k * stride] = first + k * stride + delta
assert check == lower_single

# Final sigma: Python lowers U+03A3 to U+03C2 when a cased letter precedes it (skipping
# case-ignorable characters) and none follows. Probe both properties per code point.
SIGMA = "\u03a3"
cased = []       # cased and not case-ignorable (an ignorable character is always skipped)
ignorable = []
for cp in CODE_POINTS:
    x = chr(cp)
    before = (x + SIGMA).lower().endswith("\u03c2")
    between = ("A" + x + SIGMA).lower().endswith("\u03c2")
    after = ("A" + SIGMA + x).lower()
    if before:
        cased.append(cp)
        assert between
    elif between:
        ignorable.append(cp)
    # The rule after the sigma reads the same two properties: a following cased character
    # (ignorable ones skipped) blocks the final form.
    assert (after[1] == "\u03c2") == (not before), hex(cp)

# --------------------------------------------------------- Python whitespace etc.
py_space = members(str.isspace)
re_space = members(lambda c: re.match(r"\s", c) is not None)
assert re_space == py_space, "re's \\s is str.isspace"
re_word = members(lambda c: re.match(r"\w", c) is not None)
re_digit = members(lambda c: re.match(r"\d", c) is not None)

# ------------------------------------------------------ regex module (CLIP's pattern)
rx_space = members(regex.compile(r"\s").match)
rx_letter = members(regex.compile(r"[\p{L}]", regex.IGNORECASE).match)
rx_number = members(regex.compile(r"[\p{N}]", regex.IGNORECASE).match)
rx_other = members(regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE).match)
# ASCII letters of CLIP's literals ('s 't 're 've 'm 'll 'd <|startoftext|> <|endoftext|>) and the
# characters each matches under IGNORECASE.
literal_letters = sorted(set("strevmldaofxn"))
icase = {}
for letter in literal_letters:
    p = regex.compile(regex.escape(letter), regex.IGNORECASE)
    icase[letter] = "".join(chr(cp) for cp in CODE_POINTS if p.fullmatch(chr(cp)))
for punct in "'<|>":
    p = regex.compile(regex.escape(punct), regex.IGNORECASE)
    assert [cp for cp in CODE_POINTS if p.fullmatch(chr(cp))] == [ord(punct)]

# --------------------------------------------------------------------- ftfy data
def char_class(body):
    p = re.compile("[" + body + "]")
    found = [cp for cp in CODE_POINTS if p.match(chr(cp))]
    assert all(cp < 0x10000 for cp in found)
    return found


for name, body in list(badness.MOJIBAKE_CATEGORIES.items()) + list(chardata.UTF8_CLUES.items()):
    # Classes are pasted next to each other inside [...]; make sure no range forms across a seam.
    assert not body.startswith("-") and not body.endswith("-") and not body.endswith("\\"), name
mojibake = {name: char_class(body) for name, body in badness.MOJIBAKE_CATEGORIES.items()}
clues = {name: char_class(body) for name, body in chardata.UTF8_CLUES.items()}

charmaps = {}
for enc in chardata.CHARMAP_ENCODINGS:
    table = bytes(range(256)).decode(enc)
    assert len(table) == 256 and len(set(table)) == 256, enc
    for b in range(256):
        assert table[b].encode(enc) == bytes([b]), (enc, b)
    assert all(table[b] == chr(b) for b in range(0x80) if b != 0x1A), enc
    allowed = set(table)
    rx = chardata.ENCODING_REGEXES[enc]
    assert all((rx.match(chr(cp)) is not None) == (chr(cp) in allowed) for cp in BMP), enc
    charmaps[enc] = table
strict1252 = ""
for b in range(256):
    try:
        strict1252 += bytes([b]).decode("windows-1252")
    except UnicodeDecodeError:
        strict1252 += "\uffff"  # undefined byte: decoding fails
assert "\uffff" not in "".join(charmaps.values())

width_map = dict(chardata.WIDTH_MAP)
ligatures = dict(chardata.LIGATURES)
control_chars = sorted(chardata.CONTROL_CHARS)

html5 = html.entities.html5
# ftfy adds upper-case spellings of all-lower-case names ending in ';' that Python's own unescape
# leaves alone, with the value upper-cased. The code applies that rule; it needs Python's upper()
# of the values, stored where it changes them.
ftfy_upper = {k: v for k, v in chardata.HTML_ENTITIES.items() if k[1:] not in html5}
rule = {}
for name, value in html5.items():
    if name.endswith(";") and name == name.lower():
        upper = "&" + name.upper()
        if html.unescape(upper) == upper:
            rule[upper] = value.upper()
assert rule == ftfy_upper
upper_values = {v: v.upper() for n, v in html5.items() if ("&" + n.upper()) in rule and v.upper() != v}
invalid_charrefs = dict(html._invalid_charrefs)
invalid_codepoints = sorted(html._invalid_codepoints)

# ------------------------------------------------------------------------ write
w("// <auto-generated>")
w("// Written by tests/Defeat.Clip.Tests/Fixtures/make_text_tables.py; do not edit by hand.")
w("// Measured with Python %s (Unicode %s), regex %s and ftfy %s."
  % (sys.version.split()[0], unicodedata.unidata_version, getattr(regex, "__version__", "?"), ftfy.__version__))
w("// </auto-generated>")
w("namespace Defeat.Clip.Tokenization;")
w("")
w("/// <summary>Character data of CLIP's reference text clean-up, measured from the reference modules.</summary>")
w("internal static class ClipTextTables")
w("{")
w("    /// <summary>Python's str.lower(): runs of (first, count, stride, delta), one character to one.</summary>")
w("    internal static readonly int[] LowerRuns =")
w("    [")
flat = []
for r in runs:
    flat += list(r)
w("\n".join("        " + ", ".join(("0x%X" % v if v >= 0 else "-0x%X" % -v) for v in flat[i:i + 12]) + ","
            for i in range(0, len(flat), 12)))
w("    ];")
w("")
w("    /// <summary>Python's str.lower() where one character becomes several.</summary>")
w("    internal static readonly (int CodePoint, string Lower)[] LowerMulti =")
w("    [")
for cp in sorted(lower_multi):
    w("        (0x%X, %s)," % (cp, cs_string(lower_multi[cp])))
w("    ];")


def emit_ranges(name, doc, cps):
    w("")
    w("    /// <summary>%s</summary>" % doc)
    w("    internal static readonly int[] %s =" % name)
    w("    [")
    w(cs_ints(ranges(cps)))
    w("    ];")


emit_ranges("Cased", "Cased and not case-ignorable (Python's final-sigma rule), as [first, last] pairs.", cased)
emit_ranges("CaseIgnorable", "Case-ignorable (Python's final-sigma rule), as [first, last] pairs.", ignorable)
emit_ranges("PySpace", "Python's str.isspace() and the re module's \\s, as [first, last] pairs.", py_space)
emit_ranges("PyWord", "The re module's \\w, as [first, last] pairs.", re_word)
emit_ranges("PyDigit", "The re module's \\d, as [first, last] pairs.", re_digit)
emit_ranges("RxSpace", "The regex module's \\s, as [first, last] pairs.", rx_space)
emit_ranges("RxLetter", "The regex module's [\\p{L}] under IGNORECASE, as [first, last] pairs.", rx_letter)
emit_ranges("RxNumber", "The regex module's [\\p{N}] under IGNORECASE, as [first, last] pairs.", rx_number)
# [^\s\p{L}\p{N}] is the complement of the other three classes except where case folding makes a
# character match none of them (U+0345 folds to a letter); only those exceptions are stored.
rx_neither = sorted(set(CODE_POINTS) - set(rx_letter) - set(rx_number) - set(rx_space) - set(rx_other))
assert not (set(rx_other) & (set(rx_letter) | set(rx_number) | set(rx_space)))
emit_ranges("RxNeither", "Characters that none of CLIP's pattern classes matches (not \\s, [\\p{L}], [\\p{N}] nor "
            "[^\\s\\p{L}\\p{N}] under IGNORECASE), as [first, last] pairs.", rx_neither)

w("")
w("    /// <summary>For each ASCII letter of CLIP's literal alternatives, the characters it matches under IGNORECASE.</summary>")
w("    internal static readonly (char Letter, string Matches)[] LiteralCaseVariants =")
w("    [")
for letter in literal_letters:
    w("        ('%s', %s)," % (letter, cs_string(icase[letter])))
w("    ];")

for name in badness.MOJIBAKE_CATEGORIES:
    emit_ranges("Mojibake_" + name, "ftfy's badness category '%s', as [first, last] pairs." % name, mojibake[name])
for name in chardata.UTF8_CLUES:
    emit_ranges("Clue_" + name, "ftfy's UTF-8 clue class '%s', as [first, last] pairs." % name, clues[name])

w("")
w("    /// <summary>ftfy's single-byte encodings in the order it tries them, each as its 256 decoded characters.</summary>")
w("    internal static readonly (string Name, string Decoded)[] Charmaps =")
w("    [")
for enc in chardata.CHARMAP_ENCODINGS:
    w("        (%s," % cs_string(enc))
    t = charmaps[enc]
    w("         " + " +\n         ".join(cs_string(t[i:i + 32]) for i in range(0, 256, 32)) + "),")
w("    ];")
w("")
w("    /// <summary>Python's strict windows-1252 decoder; U+FFFF marks a byte it rejects.</summary>")
w("    internal const string StrictWindows1252 =")
w("        " + " +\n        ".join(cs_string(strict1252[i:i + 32]) for i in range(0, 256, 32)) + ";")

w("")
w("    /// <summary>ftfy's width map: fullwidth and halfwidth forms (and U+3000) to their usual width.</summary>")
w("    internal static readonly (int CodePoint, string Replacement)[] WidthMap =")
w("    [")
for cp in sorted(width_map):
    w("        (0x%X, %s)," % (cp, cs_string(width_map[cp])))
w("    ];")
w("")
w("    /// <summary>ftfy's Latin ligatures and digraphs and the letters they stand for.</summary>")
w("    internal static readonly (int CodePoint, string Replacement)[] Ligatures =")
w("    [")
for cp in sorted(ligatures):
    w("        (0x%X, %s)," % (cp, cs_string(ligatures[cp])))
w("    ];")
emit_ranges("ControlChars", "Control characters ftfy removes, as [first, last] pairs.", control_chars)

w("")
w("    /// <summary>The HTML5 named character references (Python's html.entities.html5), name then value.</summary>")
w("    internal static readonly string[] Html5Entities =")
w("    [")
names = sorted(html5)
for i in range(0, len(names), 6):
    w("        " + " ".join("%s, %s," % (cs_string(n), cs_string(html5[n])) for n in names[i:i + 6]))
w("    ];")
w("")
w("    /// <summary>Python's str.upper() of the entity values that ftfy's upper-case entities upper-case, value then upper case.</summary>")
w("    internal static readonly string[] EntityValueUpper =")
w("    [")
items = sorted(upper_values.items())
for i in range(0, len(items), 6):
    w("        " + " ".join("%s, %s," % (cs_string(k), cs_string(v)) for k, v in items[i:i + 6]))
w("    ];")
w("")
w("    /// <summary>Python's html module: numeric references it replaces (the HTML5 'invalid' table).</summary>")
w("    internal static readonly (int Number, string Value)[] InvalidCharRefs =")
w("    [")
for n in sorted(invalid_charrefs):
    w("        (0x%X, %s)," % (n, cs_string(invalid_charrefs[n])))
w("    ];")
emit_ranges("InvalidCodePoints", "Python's html module: numeric references that decode to nothing, as [first, last] pairs.",
            invalid_codepoints)
w("}")

with open(OUT, "w", encoding="utf-8", newline="\n") as f:
    f.write("\n".join(out) + "\n")
print("wrote", OUT)
print("lower: %d one-to-one in %d runs, %d multi; cased %d, ignorable %d" % (
    len(lower_single), len(runs), len(lower_multi), len(cased), len(ignorable)))
print("regex L %d N %d O %d space %d; py space %d word %d digit %d" % (
    len(rx_letter), len(rx_number), len(rx_other), len(rx_space), len(py_space), len(re_word), len(re_digit)))
print("icase:", {k: v for k, v in icase.items() if len(v) != 2})
total = set(CODE_POINTS)
print("L&O overlap", len(set(rx_letter) & set(rx_other)), "N&O", len(set(rx_number) & set(rx_other)),
      "L&N", len(set(rx_letter) & set(rx_number)),
      "none of L/N/O/space", len(total - set(rx_letter) - set(rx_number) - set(rx_other) - set(rx_space)))
