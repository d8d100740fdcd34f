using System.Text.RegularExpressions;

namespace Defeat.Tests.Samples.ApiGuide;

/// <summary>docs/api.md shows exactly the code that <see cref="ApiGuideExampleTests"/> compiles and runs: every
/// <c>```csharp</c> block tagged <c>&lt;!-- example:name --&gt;</c> equals the region <c>// &lt;example:name&gt;</c>
/// of ApiGuideExamples.cs (whitespace-normalised), and every region is in the docs.</summary>
public partial class ApiGuideDocsTests
{
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Defeat.Core.sln"))) return dir.FullName;
        throw new InvalidOperationException("Defeat.Core.sln not found above " + TestContext.CurrentContext.TestDirectory);
    }

    [GeneratedRegex(@"^[ \t]*// <example:(?<name>[a-z0-9-]+)>[ \t]*\r?\n(?<body>.*?)^[ \t]*// </example:\k<name>>", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Region();

    [GeneratedRegex(@"<!-- example:(?<name>[a-z0-9-]+) -->[ \t]*\r?\n```csharp[ \t]*\r?\n(?<body>.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex DocBlock();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    private static string Normalise(string code) => Whitespace().Replace(code, " ").Trim();

    internal static Dictionary<string, string> Regions(string text) =>
        Region().Matches(text).ToDictionary(m => m.Groups["name"].Value, m => m.Groups["body"].Value);

    internal static Dictionary<string, string> DocBlocks(string text) =>
        DocBlock().Matches(text).ToDictionary(m => m.Groups["name"].Value, m => m.Groups["body"].Value);

    [Test]
    public void EveryDocumentedExampleIsTheCompiledRegion()
    {
        var root = RepositoryRoot();
        var regions = Regions(File.ReadAllText(Path.Combine(root, "tests/Defeat.Samples.Tests/ApiGuide/ApiGuideExamples.cs")));
        var blocks = DocBlocks(File.ReadAllText(Path.Combine(root, "docs/api.md")));

        Assert.That(regions.Keys, Is.SupersetOf(new[] { "quick-start", "vector-quantizer", "perturb-shield", "prompt-learner", "logit-fusion",
            "pgd-attack", "autoattack", "defeat-model", "defeat-trainer", "robustness-evaluator", "clip", "checkpoint-store" }));
        Assert.That(blocks.Keys, Is.EquivalentTo(regions.Keys), "docs/api.md has one tagged block per example region");
        foreach (var (name, body) in regions)
            Assert.That(Normalise(blocks[name]), Is.EqualTo(Normalise(body)), $"example '{name}' differs between docs/api.md and ApiGuideExamples.cs");
    }

    [Test]
    public void ExtractionFindsRegionsAndBlocksAndSeesAChangedLine()
    {
        const string code = "x\n        // <example:a-b>\n        var x = 1;   // one\n        // </example:a-b>\n";
        const string docs = "<!-- example:a-b -->\n```csharp\nvar x = 1; // one\n```\n";
        Assert.That(Regions(code), Has.Count.EqualTo(1).And.ContainKey("a-b"));
        Assert.That(Normalise(DocBlocks(docs)["a-b"]), Is.EqualTo(Normalise(Regions(code)["a-b"])));
        Assert.That(Normalise(DocBlocks(docs.Replace("1", "2", StringComparison.Ordinal))["a-b"]), Is.Not.EqualTo(Normalise(Regions(code)["a-b"])));
    }
}
