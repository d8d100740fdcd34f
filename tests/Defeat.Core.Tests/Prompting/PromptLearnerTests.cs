using Defeat.Prompting;
using Defeat.Tests.Fakes;

namespace Defeat.Tests.Prompting;

public class PromptLearnerTests
{
    private static readonly string[] Classes = { "cat", "red_car", "sea lion" };

    private static Tensor Embed(FakeBackbone backbone, params string[] texts) => backbone.EmbedTokens(backbone.Tokenize(texts));

    private static float MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Test]
    public void RandomSharedContextIsSeededAndSitsBeforeTheClassName()
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone();
        var options = new PromptLearnerOptions { ContextLength = 16, Seed = 4 };
        var learner = new PromptLearner(backbone, Classes, options);

        Assert.That(learner.Context.shape, Is.EqualTo(new long[] { 16, 6 }));
        var std = learner.Context.std().item<float>();
        Assert.That(std, Is.InRange(0.014f, 0.026f), "N(0, 0.02)");
        Assert.That(new PromptLearner(backbone, Classes, options).Context.equal(learner.Context).all().item<bool>(), Is.True);
        Assert.That(new PromptLearner(backbone, Classes, options with { Seed = 5 }).Context.equal(learner.Context).all().item<bool>(), Is.False);
        Assert.That(learner.ClassNames, Is.EqualTo(new[] { "cat", "red car", "sea lion" }));
        Assert.That(learner.state_dict().Keys, Is.EquivalentTo(new[] { "ctx" }));
        Assert.That(learner.parameters().Count(), Is.EqualTo(1));

        var prompts = learner.BuildPromptEmbeddings();
        var placeholders = Embed(backbone, Classes.Select(c => "x x x x x x x x x x x x x x x x " + c.Replace('_', ' ') + ".").ToArray());
        Assert.That(prompts.shape, Is.EqualTo(new long[] { 3, 24, 6 }));
        for (var i = 0; i < 3; i++)
        {
            Assert.That(MaxDiff(prompts[i, 0], placeholders[i, 0]), Is.EqualTo(0f), "start token");
            Assert.That(MaxDiff(prompts[i, 1..17], learner.Context), Is.EqualTo(0f), "context replaces the placeholders");
            Assert.That(MaxDiff(prompts[i, 17..], placeholders[i, 17..]), Is.EqualTo(0f), "class name, period, end, padding");
        }
        Assert.That(learner.TokenIds.equal(backbone.Tokenize(Classes.Select(c => "x x x x x x x x x x x x x x x x " + c.Replace('_', ' ') + ".").ToArray())).all().item<bool>(), Is.True);
    }

    [Test]
    public void PhraseInitialisationReproducesTheHandWrittenPrompt()
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone();
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextInit = "a photo of a" });

        Assert.That(learner.ContextLength, Is.EqualTo(4));
        // Before training, "ctx classname." is exactly "a photo of a classname.".
        var texts = new[] { "a photo of a cat.", "a photo of a red car.", "a photo of a sea lion." };
        Assert.That(MaxDiff(learner.BuildPromptEmbeddings(), Embed(backbone, texts)), Is.EqualTo(0f));
        Assert.That(MaxDiff(learner.EncodeTextFeatures(), backbone.EncodeText(backbone.Tokenize(texts))), Is.LessThan(1e-6f));
    }

    [TestCase(ClassTokenPosition.Front)]
    [TestCase(ClassTokenPosition.Middle)]
    public void ClassTokenPositionsPlaceTheNameAsDocumented(ClassTokenPosition position)
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone();
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 4, ClassTokenPosition = position });
        var prompts = learner.BuildPromptEmbeddings();
        var ctx = learner.Context;
        // "red car" is two tokens: [SOS, name(2), ctx(4), ".", EOS] or [SOS, ctx(2), name(2), ctx(2), ".", EOS].
        var name = Embed(backbone, "red car")[0, 1..3];
        var tail = Embed(backbone, "x x x x red car.")[0, 7..];
        var row = prompts[1];
        if (position == ClassTokenPosition.Front)
        {
            Assert.That(MaxDiff(row[1..3], name), Is.EqualTo(0f));
            Assert.That(MaxDiff(row[3..7], ctx), Is.EqualTo(0f));
        }
        else
        {
            Assert.That(MaxDiff(row[1..3], ctx[0..2]), Is.EqualTo(0f));
            Assert.That(MaxDiff(row[3..5], name), Is.EqualTo(0f));
            Assert.That(MaxDiff(row[5..7], ctx[2..4]), Is.EqualTo(0f));
        }
        Assert.That(MaxDiff(row[7..], tail), Is.EqualTo(0f));
    }

    [Test]
    public void ClassSpecificContextGivesEachClassItsOwnVectors()
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone();
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 3, ClassSpecificContext = true });
        Assert.That(learner.Context.shape, Is.EqualTo(new long[] { 3, 3, 6 }));
        var prompts = learner.BuildPromptEmbeddings();
        for (var i = 0; i < 3; i++)
            Assert.That(MaxDiff(prompts[i, 1..4], learner.Context[i]), Is.EqualTo(0f));
        Assert.That(MaxDiff(learner.Context[0], learner.Context[1]), Is.GreaterThan(0f));
    }

    [Test]
    public void TemplateFeaturesAreTheNormalisedMeanAndTheRegulariserIsMeanL1()
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone();
        var templates = new[] { "a photo of a {0}.", "a picture of the {0}." };
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 2, Templates = templates });

        var names = new[] { "cat", "red car", "sea lion" };
        var f1 = nn.functional.normalize(backbone.EncodeText(backbone.Tokenize(names.Select(n => $"a photo of a {n}.").ToArray())), dim: 1);
        var f2 = nn.functional.normalize(backbone.EncodeText(backbone.Tokenize(names.Select(n => $"a picture of the {n}.").ToArray())), dim: 1);
        var mean = f1.Plus(f2).Over(2);
        var expected = mean / mean.norm(1, keepdim: true);
        Assert.That(MaxDiff(learner.HandcraftedTextFeatures, expected), Is.LessThan(1e-6f));
        Assert.That(learner.HandcraftedTextFeatures.requires_grad, Is.False);

        var learned = nn.functional.normalize(learner.EncodeTextFeatures(), dim: 1);
        var loss = learner.TextRegularizationLoss(learned);
        Assert.That(loss.item<float>(), Is.EqualTo((learned - expected).abs().mean().item<float>()).Within(1e-6));

        loss.backward();
        Assert.That(learner.Context.grad!.abs().sum().item<float>(), Is.GreaterThan(0f), "the regulariser trains the context");
        Assert.That(backbone.parameters().All(p => p.grad is null), Is.True, "the frozen encoder gets no gradient");
    }

    [Test]
    public void TemplatesAreFilledByPlainReplacementAndChecked()
    {
        Assert.That(PromptTemplates.Fill("a {0} and a {0} {1}", "cat"), Is.EqualTo("a cat and a cat {1}"));
        Assert.That(PromptTemplates.Fill(PromptTemplates.Default, "red car"), Is.EqualTo("a photo of a red car."));
        Assert.That(new PromptLearnerOptions().Templates, Is.EqualTo(new[] { PromptTemplates.Default }));
        var none = Assert.Throws<ArgumentException>(() => PromptTemplates.Validate([], "templates"))!;
        Assert.That(none.ParamName, Is.EqualTo("templates"));
        Assert.That(none.Message, Does.Contain("at least one template"));
        var marker = Assert.Throws<ArgumentException>(() => PromptTemplates.Validate(["a {0}.", "a photo"], "templates"))!;
        Assert.That(marker.Message, Does.Contain("{0}").And.Contain("\"a photo\""));
    }

    [Test]
    public void BadOptionsAndShapesGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var backbone = new FakeBackbone();
        var e1 = Assert.Throws<ArgumentException>(() => new PromptLearner(backbone, Classes, new PromptLearnerOptions { Templates = new[] { "a photo" } }));
        Assert.That(e1!.ParamName, Is.EqualTo("Templates"));
        Assert.That(e1.Message, Does.Contain("{0}").And.Contain("a photo"));
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() => new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 0 }));
        Assert.That(e2!.ParamName, Is.EqualTo("ContextLength"));
        var e3 = Assert.Throws<ArgumentException>(() => new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 2, Placeholder = "x," }));
        Assert.That(e3!.Message, Does.Contain("one token"));
        var e4 = Assert.Throws<ArgumentException>(() => new PromptLearner(backbone, Array.Empty<string>()));
        Assert.That(e4!.ParamName, Is.EqualTo("classNames"));
        var learner = new PromptLearner(backbone, Classes, new PromptLearnerOptions { ContextLength = 2 });
        var e5 = Assert.Throws<ArgumentException>(() => learner.TextRegularizationLoss(zeros(2, 8)));
        Assert.That(e5!.Message, Does.Contain("[3, 8]").And.Contain("[2, 8]"));
    }
}
