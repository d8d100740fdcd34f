using System.Text.Json;
using Defeat.Clip.Tokenization;

namespace Defeat.Tests.Clip;

/// <summary>
/// The tokenizer against the reference (CLIP's SimpleTokenizer with ftfy 6.3.1 under Python 3.11) on texts made to
/// exercise every step of the clean-up: ftfy's own test cases, mojibake in many code pages, HTML entities,
/// lower-casing edge cases and random text from many scripts (Fixtures/make_tokenizer_exact_fixtures.py).
/// </summary>
public class TokenizerExactnessTests
{
    // Texts with lone surrogates come as UTF-16 code units (U16), which JSON text cannot hold.
    private sealed record ExactCase(string Group, string? Text, string Fixed, string Clean, int[] Ids, int[]? U16)
    {
        public string Input => U16 is null ? Text! : new string(U16.Select(u => (char)u).ToArray());
    }

    private static readonly Lazy<List<ExactCase>> Cases = new(() =>
    {
        var json = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer_exact_cases.json"));
        return JsonSerializer.Deserialize<List<ExactCase>>(json, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
    });

    private static IEnumerable<TestCaseData> ExactCases() =>
        Cases.Value.Select((c, i) => new TestCaseData(i).SetArgDisplayNames($"{c.Group} #{i}"));

    [TestCaseSource(nameof(ExactCases))]
    public void FixTextCleanAndIdsMatchTheReference(int index)
    {
        var c = Cases.Value[index];
        Assert.Multiple(() =>
        {
            Assert.That(ClipTextCleaner.FixText(c.Input), Is.EqualTo(c.Fixed), "ftfy.fix_text");
            Assert.That(ClipTextCleaner.Clean(c.Input), Is.EqualTo(c.Clean), "cleaned text");
            Assert.That(ClipTokenizer.Default.Encode(c.Input), Is.EqualTo(c.Ids), "token ids");
        });
    }

    [Test]
    public void FixtureCoversTheIssueStringsAndEveryFtfyTestCase()
    {
        var groups = Cases.Value.GroupBy(c => c.Group).ToDictionary(g => g.Key, g => g.Count());
        Assert.That(Cases.Value.Where(c => c.Group == "issue").Select(c => c.Input),
            Is.EquivalentTo(new[] { "İstanbul", "cafÃ©", "doesnÃ¢â‚¬â„¢t" }));
        // 161 cases in ftfy 6.3.1's tests/test-cases plus 40 strings from its other tests.
        Assert.That(groups["ftfy"], Is.EqualTo(201));
        Assert.That(Cases.Value.Count(c => c.Group.StartsWith("ftfy", StringComparison.Ordinal) && c.Fixed != c.Input),
            Is.GreaterThan(200), "most of ftfy's cases are changed by fix_text, so they test the repair");
        Assert.That(groups["surrogates"], Is.GreaterThan(0));
        Assert.That(Cases.Value.Where(c => c.Group == "surrogates").All(c => c.Input.Any(char.IsSurrogate)), Is.True);
    }

    [Test]
    public void HugeDecimalReferenceBecomesReplacementCharacter()
    {
        // Python's html.unescape maps numbers beyond U+10FFFF to U+FFFD (the fixture checks "&#99999999999999999999;");
        // with more than 4,300 digits the reference raises instead (Python's integer-parsing limit), and the
        // same rule is kept here.
        var text = "x &#" + new string('9', 5000) + "; y";
        Assert.That(ClipTextCleaner.Clean(text), Is.EqualTo("x \uFFFD y"));
        Assert.That(ClipTextCleaner.Clean("x &#99999999999999999999; y"), Is.EqualTo("x \uFFFD y"));
    }
}
