using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Tests.Fakes;

namespace Defeat.Tests.Shield;

public class PerturbShieldTests
{
    private static PerturbShieldOptions Small => new() { FeatureDim = 6, GridHeight = 3, GridWidth = 3, HiddenDim = 4, CodebookSize = 10 };

    [Test]
    public void OutputsHaveTheDocumentedShapesAndLossesCombineAsDocumented()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var codebook = randn(10, 4);
        var quantizer = new NearestCodeQuantizer(codebook);
        var options = Small with { ReconstructionWeight = 1.5, CodebookWeight = 2 };
        var shield = new PerturbShield(options, quantizer);
        var grid = randn(2, 9, 6);

        using var output = shield.Shield(grid);

        Assert.That(output.Projected.shape, Is.EqualTo(new long[] { 2, 6 }));
        Assert.That(output.Reconstruction.shape, Is.EqualTo(new long[] { 2, 9, 6 }));
        Assert.That(output.Indices.shape, Is.EqualTo(new long[] { 2, 9 }));
        Assert.That(output.Indices.dtype, Is.EqualTo(ScalarType.Int64));
        Assert.That(quantizer.Calls, Is.EqualTo(1));

        // Reconstruction loss from the returned tensors: the target is the input grid.
        var expectedRec = (grid - output.Reconstruction).Pow(2).mean().item<float>();
        Assert.That(output.ReconstructionLoss.item<float>(), Is.EqualTo(expectedRec).Within(1e-6));
        // Codebook and commitment terms have the same forward value mean((z_e - z_q)^2); the
        // commitment term carries the quantizer's own weight (3.0), and both are weighted by CodebookWeight.
        var ze = shield.VqVae.Encode(grid.transpose(1, 2).reshape(2, 6, 3, 3)).permute(0, 2, 3, 1).reshape(-1, 4);
        var nearest = (ze.unsqueeze(1) - codebook.unsqueeze(0)).Pow(2).sum(2).argmin(1);
        Assert.That(output.Indices.reshape(-1).equal(nearest).all().item<bool>(), Is.True, "indices are the nearest codewords, row-major");
        var expectedVq = (ze - codebook[nearest]).Pow(2).mean().item<float>();
        Assert.That(output.CodebookLoss.item<float>(), Is.EqualTo(expectedVq).Within(1e-6));
        Assert.That(output.CommitmentLoss.item<float>(), Is.EqualTo(3 * expectedVq).Within(1e-5));
        Assert.That(output.Loss.item<float>(), Is.EqualTo(1.5 * expectedRec + 2 * (expectedVq + 3 * expectedVq)).Within(1e-5));

        // Projection: w . recon[b, :, d] + bias over the 9 positions.
        var linear = shield.Projection.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach());
        var expectedProjected = einsum("bnd,n->bd", output.Reconstruction, linear["linear.weight"][0]).Plus(linear["linear.bias"]);
        Assert.That((output.Projected - expectedProjected).abs().max().item<float>(), Is.LessThan(1e-5f));
    }

    [Test]
    public void DefaultWeightsAreTheOfficialOnes()
    {
        var options = new PerturbShieldOptions();
        // The commitment term's overall weight is CodebookWeight * the quantizer's beta: 0.1 * 0.25 = 0.025.
        Assert.That((options.ReconstructionWeight, options.CodebookWeight, new VectorQuantizerOptions().CommitmentWeight), Is.EqualTo((0.5, 0.1, 0.25)));
        Assert.That((options.FeatureDim, options.GridPositions, options.HiddenDim, options.CodebookSize), Is.EqualTo((512, 49, 256, 512)));
    }

    [Test]
    public void TheQuantizersCommitmentWeightIsTheShieldsCommitmentWeight()
    {
        using var scope = NewDisposeScope();
        ShieldOutput Run(double beta)
        {
            manual_seed(5);
            var shield = new PerturbShield(Small with { Quantizer = new VectorQuantizerOptions { CodebookSize = 10, Dim = 4, CommitmentWeight = beta, InitScale = 1 } });
            return shield.Shield(randn(new long[] { 2, 9, 6 }, generator: new Generator(6)));
        }
        var quarter = Run(0.25);
        var one = Run(1.0);
        // Same seeds, same weights: only beta differs, so the commitment term and the loss move by the hand-worked amounts.
        var mse = quarter.CodebookLoss.item<float>();
        Assert.That(quarter.CommitmentLoss.item<float>(), Is.EqualTo(0.25 * mse).Within(1e-6));
        Assert.That(one.CommitmentLoss.item<float>(), Is.EqualTo(mse).Within(1e-6));
        Assert.That(one.Loss.item<float>() - quarter.Loss.item<float>(), Is.EqualTo(0.1 * 0.75 * mse).Within(1e-6));
        Assert.That(mse, Is.GreaterThan(0f));
    }

    [Test]
    public void GradientsReachEncoderCodebookDecoderAndProjection()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var shield = new PerturbShield(Small);
        var grid = randn(3, 9, 6);
        using var output = shield.Shield(grid);
        output.Loss.Plus(output.Projected.Pow(2).sum()).backward();
        foreach (var (name, parameter) in shield.named_parameters())
        {
            Assert.That(parameter.grad, Is.Not.Null, name);
            Assert.That(parameter.grad!.abs().sum().item<float>(), Is.GreaterThan(0f), name);
        }
        Assert.That(shield.named_parameters().Select(p => p.name), Does.Contain("vqvae.vq_embedding.weight").And.Contain("cls_projection.linear.bias"));
    }

    [Test]
    public void AlignmentLossIsL1BetweenNormalisedFeatures()
    {
        using var scope = NewDisposeScope();
        var shield = new PerturbShield(Small with { FeatureDim = 2 });
        // (3,4)/5 = (0.6,0.8) vs (1,0): |0.6-1| + |0.8-0| = 1.2; (0,2)/2 = (0,1) vs (0,-1)/1: 0 + 2 = 2; mean over 4 entries.
        var loss = shield.AlignmentLoss(tensor(new float[] { 3, 4, 0, 2 }).reshape(2, 2), tensor(new float[] { 5, 0, 0, -3 }).reshape(2, 2));
        Assert.That(loss.item<float>(), Is.EqualTo((1.2 + 2.0) / 4).Within(1e-6));
    }

    [Test]
    public void QuantizerOptionsAreUsableInsideTheShield()
    {
        using var scope = NewDisposeScope();
        var shield = new PerturbShield(Small with
        {
            Quantizer = new VectorQuantizerOptions { CodebookSize = 10, Dim = 4, CodebookUpdate = CodebookUpdate.ExponentialMovingAverage, Seed = 3 },
        });
        var keys = shield.state_dict().Keys.ToList();
        Assert.That(keys, Does.Contain("vqvae.vq_embedding.weight").And.Contain("vqvae.vq_embedding.embed_avg"));
        var before = shield.state_dict()["vqvae.vq_embedding.weight"].clone();
        shield.train();
        using (var _ = shield.Shield(randn(4, 9, 6))) { }
        Assert.That(shield.state_dict()["vqvae.vq_embedding.weight"].equal(before).all().item<bool>(), Is.False, "an EMA codebook moves in training mode");
    }

    [Test]
    public void BadShapesAndOptionsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var shield = new PerturbShield(Small);
        var e = Assert.Throws<ArgumentException>(() => shield.Shield(randn(2, 8, 6)));
        Assert.That(e!.ParamName, Is.EqualTo("gridFeatures"));
        Assert.That(e.Message, Does.Contain("[B, N=9, D=6]").And.Contain("[2, 8, 6]"));
        var e2 = Assert.Throws<ArgumentException>(() => shield.AlignmentLoss(randn(2, 6), randn(2, 5)));
        Assert.That(e2!.ParamName, Is.EqualTo("projectedFeature"));
        var e3 = Assert.Throws<ArgumentOutOfRangeException>(() => PerturbShieldOptions.ForSquareGrid(6, 50));
        Assert.That(e3!.Message, Does.Contain("perfect square").And.Contain("50"));
        Assert.That(PerturbShieldOptions.ForSquareGrid(6, 49).GridHeight, Is.EqualTo(7));
        var e4 = Assert.Throws<ArgumentOutOfRangeException>(() => new PerturbShield(Small with { Quantizer = new VectorQuantizerOptions { CodebookSize = 10, Dim = 5 } }));
        Assert.That(e4!.ParamName, Is.EqualTo("Quantizer"));
        Assert.That(e4.Message, Does.Contain("Dim = 4").And.Contain("Dim = 5"));
        var e5 = Assert.Throws<ArgumentOutOfRangeException>(() => new PerturbShield(Small with { Quantizer = new VectorQuantizerOptions { CodebookSize = 10, Dim = 4, CommitmentWeight = -1 } }));
        Assert.That(e5!.ParamName, Is.EqualTo("CommitmentWeight"));
        var e6 = Assert.Throws<ArgumentException>(() => new PerturbShield(Small, new NearestCodeQuantizer(randn(10, 3))));
        Assert.That(e6!.Message, Does.Contain("hidden width 4").And.Contain("got 3"));
    }
}
