using System.Text.Json;

namespace Defeat.Tests.Shield;

/// <summary>Reads Fixtures/shield_parity.{json,bin} written by Fixtures/make_shield_fixtures.py.</summary>
internal sealed class ShieldFixture
{
    private readonly Dictionary<string, (long[] Shape, long Offset)> _entries = new();
    private readonly byte[] _data;

    public ShieldFixture()
    {
        var directory = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures");
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "shield_parity.json")));
        foreach (var entry in manifest.RootElement.GetProperty("tensors").EnumerateObject())
        {
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            _entries[entry.Name] = (shape, entry.Value.GetProperty("offset").GetInt64());
        }
        var dims = manifest.RootElement.GetProperty("dims");
        (D, H, K, B, N) = (dims.GetProperty("D").GetInt32(), dims.GetProperty("H").GetInt32(), dims.GetProperty("K").GetInt32(),
            dims.GetProperty("B").GetInt32(), dims.GetProperty("N").GetInt32());
        _data = File.ReadAllBytes(Path.Combine(directory, "shield_parity.bin"));
    }

    public int D { get; }
    public int H { get; }
    public int K { get; }
    public int B { get; }
    public int N { get; }

    public IEnumerable<string> Names => _entries.Keys;

    public Tensor this[string name]
    {
        get
        {
            var (shape, offset) = _entries[name];
            var count = shape.Aggregate(1L, (a, b) => a * b);
            var values = new double[count];
            Buffer.BlockCopy(_data, (int)offset, values, 0, (int)(count * sizeof(double)));
            return tensor(values).reshape(shape);
        }
    }
}
