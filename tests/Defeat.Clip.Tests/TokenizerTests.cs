using System.Text.Json;
using Defeat.Clip.Tokenization;

namespace Defeat.Tests.Clip;

/// <summary>CLIP's tokenizer against the reference SimpleTokenizer (with ftfy) on varied text.</summary>
public class TokenizerTests
{
    private sealed record Case(string Text, int[] Ids);

    private static IEnumerable<TestCaseData> ReferenceCases()
    {
        var json = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer_cases.json"));
        var cases = JsonSerializer.Deserialize<List<Case>>(json, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
        foreach (var c in cases)
            yield return new TestCaseData(c.Text, c.Ids).SetArgDisplayNames(c.Text.Length > 40 ? c.Text[..40] + "..." : c.Text);
    }

    [TestCaseSource(nameof(ReferenceCases))]
    public void EncodeMatchesReference(string text, int[] expected)
    {
        Assert.That(ClipTokenizer.Default.Encode(text), Is.EqualTo(expected));
    }

    [Test]
    public void KnownIdsFromTheVocabularyNotes()
    {
        using var ids = ClipTokenizer.Default.Tokenize(["a photo of a cat", "Hello, world!"]);
        Assert.That(ids.shape, Is.EqualTo(new long[] { 2, 77 }));
        Assert.That(ids.dtype, Is.EqualTo(ScalarType.Int64));
        Assert.That(ids[0, ..7].data<long>().ToArray(), Is.EqualTo(new long[] { 49406, 320, 1125, 539, 320, 2368, 49407 }));
        Assert.That(ids[1, ..6].data<long>().ToArray(), Is.EqualTo(new long[] { 49406, 3306, 267, 1002, 256, 49407 }));
        Assert.That(ids[0, 7..].count_nonzero().item<long>(), Is.Zero, "zero padding after the end token");
        Assert.That(ids[1, 6..].count_nonzero().item<long>(), Is.Zero);
    }

    [Test]
    public void LongTextIsTruncatedKeepingTheEndToken()
    {
        var text = string.Join(" ", Enumerable.Range(0, 120).Select(i => $"word{i}"));
        var full = ClipTokenizer.Default.Encode(text);
        Assert.That(full.Count, Is.GreaterThan(75));
        using var ids = ClipTokenizer.Default.Tokenize([text]);
        var row = ids[0].data<long>().ToArray();
        // Reference clip.tokenize(truncate=True): the first 77 tokens, the last replaced by the end token.
        var expected = new long[] { ClipTokenizer.StartOfText }.Concat(full.Take(75).Select(i => (long)i)).Append(ClipTokenizer.EndOfText);
        Assert.That(row, Is.EqualTo(expected));
    }

    [Test]
    public void TooLongTextThrowsWhenTruncationIsOff()
    {
        var text = string.Join(" ", Enumerable.Range(0, 120).Select(i => $"word{i}"));
        var e = Assert.Throws<ArgumentException>(() => ClipTokenizer.Default.Tokenize([text], truncate: false));
        Assert.That(e!.Message, Does.Contain("context length is 77"));
    }

    [Test]
    public void DecodeInvertsEncodeForCleanText()
    {
        var ids = ClipTokenizer.Default.Encode("a photo of a cat, 42 times!");
        Assert.That(ClipTokenizer.Default.Decode(ids).Trim(), Is.EqualTo("a photo of a cat , 4 2 times !"));
    }

    [Test]
    public void CleanerCollapsesWhitespaceUnescapesHtmlAndLowercases()
    {
        Assert.That(ClipTextCleaner.Clean("  Tom &amp;amp; JERRY\t\n  &lt;3 "), Is.EqualTo("tom & jerry <3"));
    }
}
