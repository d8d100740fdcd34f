using System.Globalization;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;

namespace Defeat.Tests.Samples.Packaging;

/// <summary>
/// The NuGet round trip of issue 7: <c>dotnet pack</c> makes the Defeat.Core and Defeat.Clip packages, and a
/// console project outside the repository (so no Directory.Build.* of ours reaches it) adds them with
/// <c>dotnet add package</c>, builds, and runs a program that quantizes a tensor and runs one DEFEAT forward.
/// On Debian 12 that run only works when the package's buildTransitive libstdc++ step ran in the consumer's build.
/// </summary>
[NonParallelizable]
public class PackageRoundTripTests
{
    private static readonly TimeSpan PackTimeout = TimeSpan.FromMinutes(4);
    private static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(3);

    private string _work = "";
    private string _version = "";

    [SetUp]
    public void CreateFolder()
    {
        // Outside the repository: the consumer must see only what the packages give it.
        _work = Directory.CreateTempSubdirectory("defeat-package-").FullName;
        // A version never used before, so NuGet's global cache cannot hand back a package from an earlier run.
        _version = "0.1.0-test.r" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture) + "p" + Environment.ProcessId;
    }

    [TearDown]
    public void CleanUp()
    {
        Directory.Delete(_work, recursive: true);
        // The consumer's restore extracted this run's packages into the global cache; they are of no use to anyone.
        foreach (var id in new[] { "defeat.core", "defeat.clip" })
        {
            var dir = Path.Combine(GlobalPackagesFolder(), id);
            var versionDir = Path.Combine(dir, _version.ToLowerInvariant());
            if (Directory.Exists(versionDir)) Directory.Delete(versionDir, recursive: true);
            if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
        }
    }

    private static string GlobalPackagesFolder() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } custom
            ? custom
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Defeat.Core.sln"))) return dir.FullName;
        throw new InvalidOperationException("Defeat.Core.sln not found above " + TestContext.CurrentContext.TestDirectory);
    }

    private static ProcessRunner.Result Dotnet(string workingDirectory, TimeSpan timeout, params string[] arguments)
    {
        var result = ProcessRunner.Run("dotnet", arguments, workingDirectory, timeout);
        Assert.That(result.ExitCode, Is.EqualTo(0), result.Describe);
        return result;
    }

    [Test]
    public void PackagesInstallIntoAnOutsideConsumerThatQuantizesAndRunsDefeat()
    {
        var root = RepositoryRoot();
        Assert.That(Path.GetRelativePath(root, _work), Does.StartWith(".."), "the consumer folder must lie outside the repository");
        var feed = Path.Combine(_work, "feed");
        var artifacts = Path.Combine(_work, "artifacts");

        // 1. Pack. A private artifacts folder keeps this build apart from the solution's bin/obj, which the
        //    test run itself is using.
        foreach (var project in new[] { "src/Defeat.Core/Defeat.Core.csproj", "src/Defeat.Clip/Defeat.Clip.csproj" })
            Dotnet(root, PackTimeout, "pack", project, "-c", "Release", "-o", feed, "--artifacts-path", artifacts,
                "-p:Version=" + _version, "-nodeReuse:false");

        CheckCorePackage(Path.Combine(feed, $"Defeat.Core.{_version}.nupkg"), Path.Combine(feed, $"Defeat.Core.{_version}.snupkg"));
        CheckClipPackage(Path.Combine(feed, $"Defeat.Clip.{_version}.nupkg"), Path.Combine(feed, $"Defeat.Clip.{_version}.snupkg"));

        // 2. A consumer: a plain net10.0 console project. Its nuget.config only adds the local folder, so the
        //    machine's default feeds still apply (TorchSharp and friends come from there or its cache). Empty
        //    Directory.Build.* files here stop MSBuild from looking further up for any others.
        var consumer = Path.Combine(_work, "consumer");
        Directory.CreateDirectory(consumer);
        File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), """
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
            </Project>
            """);
        foreach (var name in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
            File.WriteAllText(Path.Combine(consumer, name), "<Project />\n");
        File.WriteAllText(Path.Combine(consumer, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="defeat-test-feed" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(consumer, "Program.cs"), ConsumerProgram);

        Dotnet(consumer, StepTimeout, "add", "package", "Defeat.Core", "--version", _version);
        // No version: the newest in the feeds; this run's is a prerelease, so it must be allowed.
        Dotnet(consumer, StepTimeout, "add", "package", "Defeat.Clip", "--prerelease");
        // The consumer picks the native backend (CPU here), at the TorchSharp version the packages were built against.
        Dotnet(consumer, StepTimeout, "add", "package", "TorchSharp-cpu", "--version", "0.107.0");

        var csproj = XDocument.Load(Path.Combine(consumer, "Consumer.csproj"));
        var references = csproj.Descendants("PackageReference").ToDictionary(e => (string)e.Attribute("Include")!, e => (string?)e.Attribute("Version"));
        Assert.That(references, Does.ContainKey("Defeat.Core").WithValue(_version));
        Assert.That(references, Does.ContainKey("Defeat.Clip").WithValue(_version), "dotnet add package Defeat.Clip picks this run's package");

        Dotnet(consumer, StepTimeout, "build", "-c", "Release", "-nodeReuse:false");

        // The package's libstdc++ step is imported into the consumer's build from the package itself.
        var nugetTargets = File.ReadAllText(Path.Combine(consumer, "obj", "Consumer.csproj.nuget.g.targets"));
        Assert.That(nugetTargets.Replace('\\', '/'),
            Does.Contain($"defeat.core/{_version.ToLowerInvariant()}/buildTransitive/Defeat.Core.targets"), nugetTargets);
        CheckNativeLibraryWasPatchedWhenNeeded(Path.Combine(consumer, "bin", "Release", "net10.0"));

        // 3. Run it and check what it printed against computations made here.
        var run = Dotnet(consumer, StepTimeout, "run", "-c", "Release", "--no-build");
        var lines = run.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.Contains(": ", StringComparison.Ordinal))
            .ToDictionary(l => l[..l.IndexOf(": ", StringComparison.Ordinal)], l => l[(l.IndexOf(": ", StringComparison.Ordinal) + 2)..]);
        foreach (var key in new[] { "z", "codebook", "indices", "tokens", "logits shape", "ce", "align", "text_reg", "vqvae", "total" })
            Assert.That(lines, Does.ContainKey(key), run.Describe());

        static double[] Numbers(string text) => text.Split(' ').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        var z = Numbers(lines["z"]);
        var codebook = Numbers(lines["codebook"]);
        var indices = lines["indices"].Split(' ').Select(long.Parse).ToArray();
        Assert.That(z, Has.Length.EqualTo(6 * 4));
        Assert.That(codebook, Has.Length.EqualTo(8 * 4));
        // Brute force: the nearest codeword of each row in squared Euclidean distance.
        var expected = Enumerable.Range(0, 6).Select(r => (long)Enumerable.Range(0, 8)
            .MinBy(k => Enumerable.Range(0, 4).Sum(d => Math.Pow(z[r * 4 + d] - codebook[k * 4 + d], 2)))).ToArray();
        Assert.That(indices, Is.EqualTo(expected), run.Describe());

        // CLIP's ids of "a photo of a cat" (start, words, end, padding): the BPE vocabulary is inside the package.
        Assert.That(lines["tokens"], Is.EqualTo("49406 320 1125 539 320 2368 49407 0"));

        Assert.That(lines["logits shape"], Is.EqualTo("2x2"));
        var (ce, align, textReg, vqvae, total) = (double.Parse(lines["ce"], CultureInfo.InvariantCulture),
            double.Parse(lines["align"], CultureInfo.InvariantCulture), double.Parse(lines["text_reg"], CultureInfo.InvariantCulture),
            double.Parse(lines["vqvae"], CultureInfo.InvariantCulture), double.Parse(lines["total"], CultureInfo.InvariantCulture));
        Assert.That(new[] { ce, align, textReg, vqvae, total }, Has.All.Matches<double>(double.IsFinite));
        // Two classes from a random model: the cross-entropy is near log 2, and positive.
        Assert.That(ce, Is.GreaterThan(0));
        // The documented total: CE + lambda (10) * alignment + mu (20) * text regulariser + 1 * VQ-VAE loss.
        Assert.That(total, Is.EqualTo(ce + 10 * align + 20 * textReg + vqvae).Within(1e-4 * Math.Max(1, Math.Abs(total))));
    }

    private static ZipArchive Open(string path)
    {
        Assert.That(File.Exists(path), Is.True, path + " was not written; the feed holds: " +
            string.Join(", ", Directory.GetFiles(Path.GetDirectoryName(path)!).Select(Path.GetFileName)));
        return ZipFile.OpenRead(path);
    }

    private static XElement Metadata(ZipArchive package, string id)
    {
        using var stream = package.GetEntry(id + ".nuspec")!.Open();
        var nuspec = XDocument.Load(stream).Root!;
        return nuspec.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static string Text(XElement metadata, string name) =>
        metadata.Elements().Single(e => e.Name.LocalName == name).Value;

    private static IReadOnlyList<(string Framework, string Id, string Version)> Dependencies(XElement metadata) =>
        metadata.Descendants().Where(e => e.Name.LocalName == "dependency")
            .Select(e => ((string)e.Parent!.Attribute("targetFramework")!, (string)e.Attribute("id")!, (string)e.Attribute("version")!)).ToList();

    private static string ReadEntry(ZipArchive package, string name)
    {
        using var reader = new StreamReader(package.GetEntry(name)!.Open());
        return reader.ReadToEnd();
    }

    private void CheckCommon(ZipArchive package, ZipArchive symbols, string id)
    {
        var entries = package.Entries.Select(e => e.FullName).ToList();
        foreach (var tfm in new[] { "net8.0", "net10.0" })
        {
            Assert.That(entries, Does.Contain($"lib/{tfm}/{id}.dll").And.Contain($"lib/{tfm}/{id}.xml"));
            Assert.That(symbols.Entries.Select(e => e.FullName), Does.Contain($"lib/{tfm}/{id}.pdb"));
            Assert.That(ReadEntry(package, $"lib/{tfm}/{id}.xml"), Does.Contain("<summary>"), "XML documentation");
        }
        Assert.That(entries, Does.Contain("README.md"));
        Assert.That(ReadEntry(package, "README.md"), Is.EqualTo(File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"))), "the repository's README");
        var metadata = Metadata(package, id);
        Assert.That(Text(metadata, "version"), Is.EqualTo(_version));
        Assert.That(Text(metadata, "license"), Is.EqualTo("MIT"));
        Assert.That((string?)metadata.Elements().Single(e => e.Name.LocalName == "license").Attribute("type"), Is.EqualTo("expression"));
        Assert.That(Text(metadata, "readme"), Is.EqualTo("README.md"));
        // SourceLink's git information: the commit the package was built from (a copy without .git has none).
        var root = RepositoryRoot();
        if (Path.Exists(Path.Combine(root, ".git")))
        {
            var head = ProcessRunner.Run("git", ["rev-parse", "HEAD"], root, TimeSpan.FromSeconds(30));
            Assert.That(head.ExitCode, Is.EqualTo(0), head.Describe);
            var repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
            Assert.That((string?)repository.Attribute("commit"), Is.EqualTo(head.Output.Trim()));
        }
    }

    private void CheckCorePackage(string nupkg, string snupkg)
    {
        using var package = Open(nupkg);
        using var symbols = Open(snupkg);
        CheckCommon(package, symbols, "Defeat.Core");
        Assert.That(package.Entries.Select(e => e.FullName), Does.Contain("buildTransitive/Defeat.Core.targets"));
        Assert.That(ReadEntry(package, "buildTransitive/Defeat.Core.targets"), Does.Contain("GLIBCXX_3.4.32"));
        Assert.That(Dependencies(Metadata(package, "Defeat.Core")), Does.Contain(("net10.0", "TorchSharp", "0.107.0")));
    }

    private void CheckClipPackage(string nupkg, string snupkg)
    {
        using var package = Open(nupkg);
        using var symbols = Open(snupkg);
        CheckCommon(package, symbols, "Defeat.Clip");
        Assert.That(ReadEntry(package, "THIRD-PARTY-NOTICES.txt"), Does.Contain("OpenAI"));
        // The project reference became a package dependency on this very version, for each framework.
        var dependencies = Dependencies(Metadata(package, "Defeat.Clip"));
        Assert.That(dependencies, Does.Contain(("net8.0", "Defeat.Core", _version)).And.Contain(("net10.0", "Defeat.Core", _version)));
        // The BPE merge list is embedded in the assembly.
        using var dll = new MemoryStream();
        using (var entry = package.GetEntry("lib/net10.0/Defeat.Clip.dll")!.Open()) entry.CopyTo(dll);
        dll.Position = 0;
        using var pe = new PEReader(dll);
        var reader = pe.GetMetadataReader();
        var resources = reader.ManifestResources.Select(h => reader.GetString(reader.GetManifestResource(h).Name)).ToList();
        Assert.That(resources, Does.Contain("Defeat.Clip.bpe_simple_vocab_16e6.txt.gz"));
    }

    /// <summary>On a system whose libstdc++ lacks GLIBCXX_3.4.32 (Debian 12), the consumer's copy of
    /// libLibTorchSharp.so must differ from the NuGet cache's (patched); elsewhere it must be the same bytes.</summary>
    private static void CheckNativeLibraryWasPatchedWhenNeeded(string outputDirectory)
    {
        if (!OperatingSystem.IsLinux()) return;
        var copy = Directory.GetFiles(outputDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories);
        Assert.That(copy, Is.Not.Empty, "libLibTorchSharp.so in the consumer's output");
        var original = Path.Combine(GlobalPackagesFolder(), "torchsharp", "0.107.0", "runtimes",
            System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier, "native", "libLibTorchSharp.so");
        Assert.That(File.Exists(original), Is.True, original);
        var libstdcxx = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6" }
            .FirstOrDefault(File.Exists);
        if (libstdcxx is null) return;
        var systemHasIt = System.Text.Encoding.Latin1.GetString(File.ReadAllBytes(libstdcxx)).Contains("GLIBCXX_3.4.32\0", StringComparison.Ordinal);
        var same = File.ReadAllBytes(copy[0]).AsSpan().SequenceEqual(File.ReadAllBytes(original));
        Assert.That(same, Is.EqualTo(systemHasIt),
            systemHasIt ? "the library was changed although the system libstdc++ has GLIBCXX_3.4.32"
                        : "the consumer's libLibTorchSharp.so was not patched although the system libstdc++ lacks GLIBCXX_3.4.32");
    }

    /// <summary>The consumer's program: one VectorQuantizer call and one DEFEAT forward on a tiny random CLIP,
    /// printing what the test checks.</summary>
    private const string ConsumerProgram = """
        using System.Globalization;
        using Defeat.Clip;
        using Defeat.Clip.Tokenization;
        using Defeat.Model;
        using Defeat.Quantization;
        using Defeat.Shield;
        using TorchSharp;
        using static TorchSharp.torch;

        static string Numbers(Tensor t) => string.Join(' ',
            t.detach().to_type(ScalarType.Float64).data<double>().ToArray().Select(v => v.ToString("R", CultureInfo.InvariantCulture)));

        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 8, Dim = 4, InitScale = 1.0, Seed = 3 });
        var z = randn(new long[] { 6, 4 }, generator: new Generator(5));
        using var q = vq.Quantize(z);
        Console.WriteLine("z: " + Numbers(z));
        Console.WriteLine("codebook: " + Numbers(vq.Codebook));
        Console.WriteLine("indices: " + string.Join(' ', q.Indices.data<long>().ToArray()));

        Console.WriteLine("tokens: " + string.Join(' ', ClipTokenizer.Default.Tokenize(["a photo of a cat"], contextLength: 8).data<long>().ToArray()));

        using var clip = new ClipModel(ClipConfig.Tiny(imageResolution: 8, patchSize: 2, inputChannels: 1, width: 32, layers: 1, heads: 1, embedDim: 16));
        clip.InitializeParameters(seed: 3);
        using var model = DefeatModel.Create(clip, ["cat", "dog"], shieldOptions: new PerturbShieldOptions { HiddenDim = 8, CodebookSize = 16 });
        var images = rand(new long[] { 2, 1, 8, 8 }, generator: new Generator(7));
        using var output = model.call(images, tensor(new long[] { 0, 1 }));
        Console.WriteLine("logits shape: " + string.Join('x', output.Logits.shape));
        Console.WriteLine("ce: " + Numbers(output.CrossEntropy));
        Console.WriteLine("align: " + Numbers(output.AlignmentLoss));
        Console.WriteLine("text_reg: " + Numbers(output.TextRegularization));
        Console.WriteLine("vqvae: " + Numbers(output.VqVaeLoss));
        Console.WriteLine("total: " + Numbers(output.Total));
        """;
}
