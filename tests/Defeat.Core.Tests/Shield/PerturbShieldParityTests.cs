using Defeat.Shield;

namespace Defeat.Tests.Shield;

/// <summary>The shield against the official VQVAE_NET + LinearProjection (fixtures from make_shield_fixtures.py), in float64.</summary>
public class PerturbShieldParityTests
{
    private const double Tolerance = 1e-9;

    private static (PerturbShield Shield, ShieldFixture Fixture) LoadOfficial()
    {
        var fixture = new ShieldFixture();
        var shield = new PerturbShield(new PerturbShieldOptions { FeatureDim = fixture.D, HiddenDim = fixture.H, CodebookSize = fixture.K });
        shield.to(ScalarType.Float64);
        var official = fixture.Names.Where(n => n.StartsWith("vqvae.", StringComparison.Ordinal) || n.StartsWith("cls_projection.", StringComparison.Ordinal))
            .ToDictionary(n => n, n => fixture[n]);
        // Same keys as the official CustomCLIP's vqvae.* and cls_projection.* entries: loads without renaming.
        Assert.That(shield.state_dict().Keys, Is.EquivalentTo(official.Keys));
        shield.load_state_dict(official);
        return (shield, fixture);
    }

    private static void AssertClose(Tensor actual, Tensor expected, string what)
    {
        Assert.That(actual.shape, Is.EqualTo(expected.shape), what);
        Assert.That((actual.to_type(ScalarType.Float64) - expected).abs().max().item<double>(), Is.LessThan(Tolerance), what);
    }

    [Test]
    public void OutputsAndLossesMatchTheOfficialModule()
    {
        using var scope = NewDisposeScope();
        var (shield, fixture) = LoadOfficial();
        using var output = shield.Shield(fixture["input.grid"]);

        AssertClose(output.Reconstruction, fixture["output.reconstruction"], "reconstruction");
        AssertClose(output.Projected, fixture["output.projected"], "projected");
        Assert.That(output.Indices.to_type(ScalarType.Float64).equal(fixture["output.indices"]).all().item<bool>(), Is.True, "indices");
        AssertClose(output.ReconstructionLoss.reshape(1), fixture["output.reconstruction_loss"], "reconstruction loss");
        AssertClose(output.CodebookLoss.reshape(1), fixture["output.codebook_loss"], "codebook loss");
        // The shield reports the quantizer's commitment term, weighted by its beta (0.25); the official one is unweighted.
        AssertClose(output.CommitmentLoss.reshape(1), fixture["output.commitment_loss"].Times(0.25), "commitment loss");
        AssertClose(output.Loss.reshape(1), fixture["output.loss"], "VQ-VAE loss");
        AssertClose(shield.AlignmentLoss(fixture["input.class_feature"], output.Projected).reshape(1), fixture["output.alignment_loss"], "alignment loss");
    }

    [Test]
    public void GradientsMatchTheOfficialModule()
    {
        using var scope = NewDisposeScope();
        var (shield, fixture) = LoadOfficial();
        using var output = shield.Shield(fixture["input.grid"]);
        // The fixture differentiates VQ-VAE loss + 10 * alignment loss.
        output.Loss.Plus(shield.AlignmentLoss(fixture["input.class_feature"], output.Projected).Times(10.0)).backward();

        var parameters = shield.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var name in new[] { "vqvae.encoder.0.weight", "vqvae.vq_embedding.weight", "vqvae.decoder.2.weight", "cls_projection.linear.weight" })
            AssertClose(parameters[name].grad!, fixture["grad." + name], "gradient of " + name);
    }
}
