using Defeat.Tests.Fakes;
using Defeat.Attacks;
using TorchSharp.Modules;
using static TorchSharp.torch.nn;

namespace Defeat.Tests.Attacks;

/// <summary>Small classifiers with known worst cases for the attack tests, and a model wrapper that records queries.</summary>
internal static class AttackTestModels
{
    /// <summary>logits = W x + b on the flattened image: a model whose boundaries are hyperplanes.</summary>
    public sealed class Linear : Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Linear fc;

        public Linear(int inputs, int classes, int seed, double scale = 1.0) : base(nameof(Linear))
        {
            manual_seed(seed);
            fc = torch.nn.Linear(inputs, classes);
            using (no_grad()) fc.weight!.Times_(scale);
            RegisterComponents();
        }

        public Tensor Weight => fc.weight!.detach();

        public Tensor Bias => fc.bias!.detach();

        public override Tensor forward(Tensor x) => fc.call(x.flatten(1));
    }

    /// <summary>A tiny CNN for [B, C, 8, 8] images.</summary>
    public static Module<Tensor, Tensor> SmallCnn(int channels, int classes, int seed)
    {
        manual_seed(seed);
        return Sequential(
            ("conv", new PatchConv(channels, 4, 3)),
            ("act", Tanh()),
            ("flat", Flatten()),
            ("fc", torch.nn.Linear(4 * 8 * 8, classes)));
    }

    /// <summary>Counts the model's calls and remembers every queried batch.</summary>
    public sealed class Recorder
    {
        private readonly Func<Tensor, Tensor> _model;

        public Recorder(Func<Tensor, Tensor> model) => _model = model;

        public List<Tensor> Batches { get; } = new();

        public int Calls => Batches.Count;

        public Tensor Call(Tensor x)
        {
            Batches.Add(x.detach().clone().DetachFromDisposeScope());
            return _model(x);
        }

        public void Clear()
        {
            foreach (var b in Batches) b.Dispose();
            Batches.Clear();
        }
    }

    /// <summary>For each row of <paramref name="batch"/>, the index of the nearest image of <paramref name="clean"/> (L-inf) and that distance.</summary>
    public static (long[] Index, double[] Distance) Nearest(Tensor batch, Tensor clean)
    {
        using var scope = NewDisposeScope();
        var d = (batch.flatten(1).unsqueeze(1).to_type(ScalarType.Float64) - clean.flatten(1).unsqueeze(0).to_type(ScalarType.Float64))
            .abs().amax(new long[] { 2 });
        var (values, indices) = d.min(1);
        return (indices.data<long>().ToArray(), values.data<double>().ToArray());
    }

    /// <summary>Per-image perturbation size in the attack's norm, float64.</summary>
    public static double[] Sizes(Tensor adversarial, Tensor clean, AttackNorm norm)
    {
        using var scope = NewDisposeScope();
        var delta = (adversarial.to_type(ScalarType.Float64) - clean.to_type(ScalarType.Float64)).flatten(1);
        var sizes = norm == AttackNorm.LInf ? delta.abs().amax(new long[] { 1 }) : delta.norm(1);
        return sizes.data<double>().ToArray();
    }

    /// <summary>Accuracy of <paramref name="model"/> on <paramref name="images"/>.</summary>
    public static double Accuracy(Func<Tensor, Tensor> model, Tensor images, Tensor labels)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return model(images).argmax(1).eq(labels).to_type(ScalarType.Float64).mean().item<double>();
    }
}
