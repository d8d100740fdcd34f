"""Writes tokenizer_exact_cases.json: texts that exercise every part of CLIP's text clean-up, with what the
reference makes of them: ftfy.fix_text(text), the cleaned text CLIP's pattern splits, and the token ids.

Run with the reference CLIP tokenizer and ftfy (Debian 12: /usr/bin/python3 with python3-regex):

    PYTHONPATH=/path/to/python-ftfy /usr/bin/python3 make_tokenizer_exact_fixtures.py \
        /path/to/openai+CLIP /path/to/python-ftfy [out_dir]

The reference code is imported, never copied. Groups of texts:
  issue           the three texts that differed before (İstanbul, cafÃ©, doesnÃ¢â‚¬â„¢t)
  ftfy            every 'original' of ftfy's tests/test-cases/*.json, and the same text with one more
                  layer of mojibake (UTF-8 read as latin-1, as ftfy's own test does), plus the strings of
                  its entity and character tests
  case            lower-casing edge cases (special casing, final sigma, other scripts' case pairs)
  mojibake        sentences in many languages encoded as UTF-8 and decoded with another code page, whole
                  or in part, with spaces for lost A0 bytes, U+FFFD for lost bytes, twice over
  html            entities: upper-case, HTML5-only, without ';', numeric and invalid, nested, after '<'
  random-script   random words from many scripts, some as mojibake or with a special character (seeded)
  random-any      random assigned code points from the whole range (seeded)
  misc            terminal escapes, control characters, line breaks, widths, ligatures, quotes, tokens
  surrogates      lone surrogates, stored as UTF-16 code units ("u16") since JSON text cannot hold them
Every text is run through the reference; a text the reference cannot encode is left out (none so far).
"""
import glob
import json
import os
import random
import sys
import unicodedata

import ftfy
import regex

REF = sys.argv[1] if len(sys.argv) > 1 else "/work/ref/openai+CLIP"
FTFY = sys.argv[2] if len(sys.argv) > 2 else "/work/ref/rspeer+python-ftfy"
OUT = sys.argv[3] if len(sys.argv) > 3 else os.path.dirname(os.path.abspath(__file__))


def _load(name, path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


st = _load("clip_simple_tokenizer", os.path.join(REF, "clip", "simple_tokenizer.py"))
tok = st.SimpleTokenizer(os.path.join(REF, "clip", "bpe_simple_vocab_16e6.txt.gz"))

cases = []  # (group, text)


def add(group, *texts):
    for t in texts:
        cases.append((group, t))


# ------------------------------------------------------------------ issue
add("issue", "İstanbul", "cafÃ©", "doesnÃ¢â‚¬â„¢t")

# ------------------------------------------------------------------ ftfy's own test cases
ftfy_cases = []
for path in sorted(glob.glob(os.path.join(FTFY, "tests", "test-cases", "*.json"))):
    with open(path, encoding="utf-8") as f:
        ftfy_cases.extend(json.load(f))
for c in ftfy_cases:
    add("ftfy", c["original"])
for c in ftfy_cases:
    add("ftfy-extra-bad", c["original"].encode("utf-8").decode("latin-1"))
add("ftfy",
    # from its entity and character tests
    "&amp;\n<html>\n&amp;", "&lt;&gt;", "jednocze&sacute;nie", "JEDNOCZE&Sacute;NIE", "ellipsis&#133;",
    "ellipsis&#x85;", "broken&#x81;", "&amp;amp;amp;", "euro &#x80;", "EURO &EURO;", "not an entity &#20x6;",
    "JEDNOCZE&SACUTE;NIE", "V&SCARON;ICHNI", "&#xffff;", "&#xffffffff;", "this is just informal english &not html",
    "ï»¿", "\ufeffSometimes, \ufffcbad ideas \x7f\ufffalike these characters\ufffb \u206aget standardized.\r\n",
    "This flag has a dragon on it 🏴󠁧󠁢󠁷󠁬󠁳󠁿",
    "#superman #ohio 🏴\U000e0075\U000e0073\U000e006f\U000e0068\U000e007f #cleveland #usa 🇺🇸",
    "\001\033[36;44mfoo", "âœ” No problems", "&macr;\\_(ã\x83\x84)_/&macr;",
    "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!", "ＬＯＵＤ　ＮＯＩＳＥＳ", "sÃ³", "voilÃ le travail", "schÃ¶n",
    "&Jscr;ohn &HilbertSpace;ancock", "&checkmark;", "P&EACUTE;REZ", "BUNDESSTRA&SZLIG;E",
    "&ntilde; &Ntilde; &NTILDE; &nTILDE;", "\033[36;44mI'm blue, da ba dee da ba doo...\033[0m",
    "\u201chere\u2019s a test\u201d", "ﬂuﬃeﬆ", "Ｕﾀｰﾝ",
    "This string is made of two things:\u2029" "1. Unicode\u2028" "2. Spite",
    "Content-type: text/plain\r\n\r\nHi.", "This is how Microsoft \r trolls Mac users", "What is this \x85 I don't even",
    "(╯°□°)╯︵ ┻━┻", "here comes a null! \xc0\x80".encode("latin-1").decode("latin-1"))

# ------------------------------------------------------------------ lower-casing
add("case",
    "İstanbul İZMİR", "DİYARBAKIR ıI", "ΟΔΥΣΣΕΥΣ", "ὈΔΥΣΣΕΎΣ", "ΣΑΣ Σ ΑΣ. ΑΣ' ΑΣΑ", "Σ", "ΑΣ", "ΑΣ̈", "ΑΣ̈Α",
    "Α'Σ", "Α\u00adΣ", "ΑΣ\u00ad", "ΑΣ\u200dΒ", "1Σ", "ΑΣ1", "ΑΣ🙂", "𐐀Σ", "ᾼΣ", "ΣΣΣ", "ΑΣΣ ΣΣΑ",
    "ẞ STRASSE", "ǅ ǈ ǋ ǲ", "Ⅰ Ⅱ Ⅻ ⅰ", "Ⓐ Ⓩ ⓐ", "K Å Ω", "ſ 'ſ 'ſt <|ſtartoftext|> <|endoftext|>x",
    "'S 'T 'RE 'VE 'M 'LL 'D <|STARTOFTEXT|>", "ᾳ ᾼ ͅ α\u0345", "ᎠᏴ ꭰ", "ᲐᲑᲒ ა", "𐐀𐐁𐐨 Deseret",
    "𞤀𞤁 Adlam", "𐒰𐒱 Osage", "𑢠𑢡 Warang", "𖹀𖹁 Medefaidrin", "𐕰𐕱 Vithkuqi", "Ꞵ ꞵ Ꟊ Ᶎ",
    "ΐ ΰ ŉ ǰ ẖ ẗ ẘ ẙ ẚ", "ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ ﬓ ﬔ", "Ⰰ Ⱡ Ɫ Ɽ", "ǄǅǆǇǈǉǊǋǌ", "ΆΈΉΊΌΎΏ", "ЀЁЂЃЄЅІЇЈЉЊЋЌЍЎЏ",
    "ԱԲԳ Հայաստան", "ΜΆΙΟΣ ΣΟΦΟΣ.", "ΣΊΣΥΦΟΣ", "ΑΣ\u0301 ΑΣ\u0301Β", "Ά\u0345Σ")
# every upper-case letter whose lower case Python maps, a few per text
uppers = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and chr(cp).lower() != chr(cp)]
rng = random.Random(14)
for i in range(0, len(uppers), 60):
    chunk = uppers[i:i + 60]
    add("case-all", " ".join("".join(chunk[j:j + 6]) for j in range(0, len(chunk), 6)))

# ------------------------------------------------------------------ mojibake
sentences = [
    "café crème brûlée à la française", "Ça coûte 20 € — c’est « très » cher…", "Grüße aus München, schön!",
    "El niño comió jamón en Córdoba ¿verdad?", "São Paulo não é a capital", "Zażółć gęślą jaźń",
    "Příliš žluťoučký kůň úpěl ďábelské ódy", "Iğdır'da çok güzel şeyler görüş", "Ελληνικά γράμματα",
    "Съешь же ещё этих мягких французских булок", "Україна — це Європа", "Árvíztűrő tükörfúrógép",
    "Ęlę Łódź ąę", "Kęstutis Šiaulių", "Ørsted Æbleskiver på Ærø", "日本語のテキスト", "中文字符测试",
    "한국어 텍스트", "emoji 😀👍🏽🇺🇸", "“quoted” ‘text’ – dash — dash • bullet ™ © ®",
    "1 ½ ¼ ¾ ² ³ ° µ ±", "naïve coöperate façade", "עברית", "العربية", "हिन्दी", "ไทย",
    "Ναι, ΣΟΦΟΣ", "Ölçüm ğ ş ı İ", "voilà le travail", "à propos", "Ñandú", "œuvre cœur",
]
single_byte = ["latin-1", "windows-1252", "windows-1250", "windows-1251", "windows-1253", "windows-1254",
               "windows-1257", "iso-8859-2", "macroman", "cp437"]
for s in sentences:
    b = s.encode("utf-8")
    for enc in single_byte:
        add("mojibake", b.decode(enc, errors="replace"))
    w = b.decode("windows-1252", errors="replace")
    add("mojibake",
        w.replace("\xa0", " "),                                # A0 lost to a space
        s[:len(s) // 2] + s[len(s) // 2:].encode("utf-8").decode("windows-1252", errors="replace"),  # partly
        w.encode("utf-8").decode("windows-1252", errors="replace"),   # twice
        "Headline: " + w + "\n" + s + "\n" + w,                  # lines
        w.upper(), w.lower())
add("mojibake",
    "doesnâ€™t", "â€œmismatched quotes&hellip;â€", "I â™¥ NY", "Ã¢â€Å“", "Ã‚Â£5", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚",
    "Ã¡rbol", "Ã  la", "Ã\xa0 la", "cafÃ© cafÃ©", "cafÃ\xa9", "l'Ã©tÃ©", "â€” dash", "Â°C", "Â ", "×²",
    "test\x80\x81\x8d\x8f\x90\x9d", "C1 \x93quoted\x94 text", "\x85", "ÃƒÆ’Ã‚Â©", "Ã¶Ã¼Ã¤ ÃŸ",
    "íªµ´", "í\xa0½í¸\x80", "í\xa0½í¸\x80 emoji", "\xc0\x80", "Ã€Â", "â\x80\x9chello\xe2\x80\x9d",
    "à²¨à²®à²¸à³à²¤à³†", "√©t√©", "‚Äúquotes‚Äù", "ГўВЂВњhi", "вЂ™", "Ã\u0083Â©", "ā€™", "β€™",
    "Ø§Ù„Ø¹Ø±Ø¨ÙŠØ©", "Ã©\nplain line\nÃ©", "no mojibake: Ã but fine", "Ã© and ¢ mix ½", "│┌┐ box ├┤",
    "ðŸ˜€", "ðŸ‘ðŸ½", "Ã¢â‚¬Å“Ã¢â‚¬Â", "PÃ©rez &eacute; PÃ\xa9rez")

# ------------------------------------------------------------------ html
import html.entities  # noqa: E402
from ftfy import chardata  # noqa: E402
upper_entities = sorted(k for k in chardata.HTML_ENTITIES if k[1:] not in html.entities.html5)
for i in range(0, len(upper_entities), 80):
    add("html-upper", " ".join(upper_entities[i:i + 80]))
html5_names = sorted(html.entities.html5)
for i in range(0, len(html5_names), 100):
    add("html5", " ".join("&" + n for n in html5_names[i:i + 100]))
    add("html5-glued", "x".join("&" + n for n in html5_names[i:i + 100]))
add("html",
    "&amp", "&ampx", "&ampersand;", "&notit;", "&notin;", "&notin", "&not", "AT&T", "a&b&c", "&;", "&#;", "&#x;",
    "&#65", "&#65;", "&#x41", "&#X41;", "&#0;", "&#13;", "&#128;", "&#x9F;", "&#129;", "&#xD800;", "&#x110000;",
    "&#99999999999999999999;", "&#xFFFE;", "&#x1FFFF;", "&#11;", "&#1;", "&#31;", "&#127;", "&#x10FFFF;",
    "&#0000065;", "&amp;lt;b&amp;gt;", "&amp;amp;lt;", "&lt;p&gt;x&lt;/p&gt;", "&Aacute;&aacute;&AACUTE;",
    "&eacute &Eacute &EACUTE", "&frac12;&FRAC12;", "&szlig;&SZLIG;", "&ThickSpace;&NewLine;&Tab;",
    "&nbsp;&NBSP;&ensp;", "&LT;&GT;&AMP;&QUOT;", "&lt\n<b>&amp;</b>", "first &amp; line\nsecond < line\n&amp; third",
    "&abcdefghijklmnopqrstuvwxyzabcdefghij;", "&xyz" + "w" * 40 + ";", "&\U0001F600;", "&am\U0001F600p;",
    "&ampé", "&lté;", "&#x1F600;", "&#128512;", "&#x20AC;&#8364;&euro;", "&fjlig;&FJLIG;", "&micro;&MICRO;",
    "&hellip;&mdash;&ndash;&lsquo;&rsquo;&ldquo;&rdquo;", "&#x2019;s", "&apos;&APOS;", "&Ascr;&ascr;",
    "&#" + "9" * 30 + ";", "&#x" + "f" * 30 + ";", "&# 65;", "&#\n65;", "& amp;", "&amp ;")

# ------------------------------------------------------------------ misc
add("misc",
    "\033[1;31mred\033[0m text", "\033[١m arabic digit escape", "\033[m", "\033[12", "\033x",
    "tab\tform\x0cfeed\x0bvt\x1cfs\x1dgs\x1ers\x1fus", "null\x00byte", "del\x7fchar", "\u206a\u206f arabic controls",
    "bom\ufeff inside", "\ufff9annotation\ufffb", "obj\ufffc", "cr\rlf\ncrlf\r\nls\u2028ps\u2029nel\x85end",
    "\r\r\n\n", "  \n  ", "\u3000\u3000", "\xa0nbsp\xa0", "\u2000\u2001\u2002\u200a\u200b\u202f\u205f", "\u180e",
    "\u1680ogham", "zero\u200bwidth", "ｈａｌｆ ﾊﾝｶｸ ｶﾀｶﾅ ﾞﾟ", "￠￡￢￣￤￥￦", "＂＇", "ʼn ŉ ʼ", "‚„‛‟",
    "<|startoftext|><|endoftext|>", "<|startoftext|x", "<|endoftext|>word", "'s's't're've'm'll'd'x",
    "it's we'RE THEY'LL", "don’t", "'''", "''s", "x'", "e\u0301 a\u0308 ñ n\u0303 한 \u1100\u1161\u11a8",
    "\u0958 \u2126 \u212a \u2000", "𝐀𝐁𝐂 𝟎𝟏𝟐 𝔄", "①②③ ⅷ ㊿ 𝍠", "٣٤٥ ۳۴۵ ߀ ०१२ ๑๒๓", "1/2 ½ 3.14",
    "😀😁 👨‍👩‍👧 🏳️‍🌈 🇯🇵 1️⃣", "\U000E0001\U000E0041 tags", "\U0010FFFD private", "\uE000 pua", "\uFFFD replacement",
    "ok " * 40, "\n".join(["line %d café" % i for i in range(5)]), "a\n", "\n", " ", "")
# Lone surrogates (stored as UTF-16 code units: JSON text cannot hold them).
add("surrogates", "a\ud800b", "\udc00x", "end\ud83d", "x\udbff\ny", "\udc00\ud800", "caf\u00c3\ud800\u00a9")

# ------------------------------------------------------------------ random text
def assigned(cp):
    return not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) not in ("Cn", "Cs")


blocks = [  # (first, last) ranges from many scripts
    (0x0020, 0x007E), (0x00A0, 0x024F), (0x0250, 0x02FF), (0x0300, 0x036F), (0x0370, 0x03FF), (0x0400, 0x052F),
    (0x0530, 0x058F), (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0700, 0x074F), (0x0780, 0x07BF), (0x0900, 0x097F),
    (0x0980, 0x09FF), (0x0A00, 0x0A7F), (0x0B80, 0x0BFF), (0x0C00, 0x0C7F), (0x0D00, 0x0D7F), (0x0E00, 0x0E7F),
    (0x0E80, 0x0EFF), (0x0F00, 0x0FFF), (0x1000, 0x109F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1200, 0x137F),
    (0x13A0, 0x13FF), (0x1780, 0x17FF), (0x1800, 0x18AF), (0x1C80, 0x1CBF), (0x1E00, 0x1EFF), (0x1F00, 0x1FFF),
    (0x2000, 0x206F), (0x2070, 0x20CF), (0x2100, 0x214F), (0x2150, 0x218F), (0x2190, 0x23FF), (0x2460, 0x24FF),
    (0x2500, 0x27BF), (0x2C00, 0x2C7F), (0x2D00, 0x2D2F), (0x3000, 0x30FF), (0x3100, 0x31FF), (0x3200, 0x33FF),
    (0x4E00, 0x9FFF), (0xA4D0, 0xA4FF), (0xA640, 0xA69F), (0xA720, 0xA7FF), (0xAB70, 0xABBF), (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFB50, 0xFDFF), (0xFE00, 0xFE6F), (0xFF00, 0xFFEF), (0x10400, 0x1044F),
    (0x104B0, 0x104FF), (0x10570, 0x105BF), (0x118A0, 0x118FF), (0x16E40, 0x16E9F), (0x1D400, 0x1D7FF),
    (0x1E900, 0x1E95F), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF),
]
pool = {i: [cp for cp in range(a, b + 1) if assigned(cp)] for i, (a, b) in enumerate(blocks)}
rng = random.Random(20240614)
spice = ["Σ", "ΑΣ", "İ", "ſ", "'s", "'ll", "&amp;", "&eacute", "&#233;", "ﬁ", "“", "’", "\u0301", "\u0345", "\xa0",
         "\u3000", "Ｆ", "\x85", "\x93", "\r\n", "\u2028", "<", "\x1b[1m", "\ufeff", "½", "٣"]
for n in range(200):
    parts = []
    for _ in range(rng.randint(1, 6)):
        block = pool[rng.randrange(len(blocks))]
        word = "".join(chr(rng.choice(block)) for _ in range(rng.randint(1, 8)))
        r = rng.random()
        if r < 0.2:  # the word as mojibake
            word = word.encode("utf-8").decode(rng.choice(single_byte), errors="replace")
        elif r < 0.4:
            word += rng.choice(spice)
        parts.append(word)
        parts.append(rng.choice([" ", " ", " ", ", ", ". ", "\n", "\t", "'s ", " & ", "-", "", "\u3000", "\xa0"]))
    add("random-script", "".join(parts))
all_assigned = [cp for cp in range(0x110000) if assigned(cp)]
for n in range(100):
    add("random-any", "".join(chr(rng.choice(all_assigned)) for _ in range(rng.randint(1, 12))))

# ------------------------------------------------------------------ run the reference
results, skipped = [], 0
seen = set()
for group, text in cases:
    if text in seen:
        continue
    seen.add(text)
    try:
        fixed = ftfy.fix_text(text)
        clean = st.whitespace_clean(st.basic_clean(text)).lower()
        ids = tok.encode(text)
    except Exception as e:  # the reference cannot encode it (e.g. a lone surrogate)
        print("skipped", repr(text)[:60], type(e).__name__)
        skipped += 1
        continue
    case = {"group": group, "text": text, "fixed": fixed, "clean": clean, "ids": ids}
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        units = text.encode("utf-16-le", "surrogatepass")
        case["text"] = None
        case["u16"] = [units[i] | units[i + 1] << 8 for i in range(0, len(units), 2)]
    results.append(case)

with open(os.path.join(OUT, "tokenizer_exact_cases.json"), "w", encoding="utf-8") as f:
    # One case per line.
    f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in results) + "\n]\n")

counts = {}
for r in results:
    counts[r["group"]] = counts.get(r["group"], 0) + 1
print("wrote %d cases (%d skipped): %s" % (len(results), skipped, counts))
changed = sum(1 for c in ftfy_cases if ftfy.fix_text(c["original"]) != c["original"])
print("ftfy test cases: %d, changed by fix_text: %d" % (len(ftfy_cases), changed))
