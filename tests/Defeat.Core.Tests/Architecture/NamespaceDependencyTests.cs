using System.Reflection;
using System.Reflection.Emit;
using Defeat.Model;

namespace Defeat.Tests.Architecture;

/// <summary>
/// The namespaces of Defeat.Core form the DAG of docs/architecture.md. The dependencies are read from the compiled
/// assembly, not from the source: every type a type derives from, implements, declares in a signature, or touches in a
/// method body (the IL's type, method and field tokens, lambdas and local functions included) counts.
/// </summary>
public class NamespaceDependencyTests
{
    // Declared before Allowed, which uses it (static fields initialise in order).
    private static readonly string[] BelowTheTop =
    [
        "Defeat", "Defeat.Validation", "Defeat.Checkpoints", "Defeat.Data", "Defeat.Backbones", "Defeat.Quantization", "Defeat.Fusion",
        "Defeat.Attacks", "Defeat.Shield", "Defeat.Prompting", "Defeat.Model",
    ];

    /// <summary>What each namespace may use (besides itself, TorchSharp and the BCL): docs/architecture.md, "Layers".</summary>
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Defeat"] = [],
        ["Defeat.Validation"] = [],
        ["Defeat.Checkpoints"] = ["Defeat.Validation"],
        ["Defeat.Data"] = ["Defeat.Validation"],
        ["Defeat.Backbones"] = ["Defeat", "Defeat.Validation"],
        ["Defeat.Quantization"] = ["Defeat", "Defeat.Validation"],
        ["Defeat.Fusion"] = ["Defeat", "Defeat.Validation"],
        ["Defeat.Attacks"] = ["Defeat", "Defeat.Validation"],
        ["Defeat.Shield"] = ["Defeat", "Defeat.Validation", "Defeat.Quantization"],
        ["Defeat.Prompting"] = ["Defeat", "Defeat.Validation", "Defeat.Backbones"],
        ["Defeat.Model"] = ["Defeat", "Defeat.Validation", "Defeat.Checkpoints", "Defeat.Backbones", "Defeat.Quantization",
            "Defeat.Fusion", "Defeat.Shield", "Defeat.Prompting"],
        // The top: Training and Evaluation may use the model, the attacks and everything below them, but not each other.
        ["Defeat.Training"] = [.. BelowTheTop],
        ["Defeat.Evaluation"] = [.. BelowTheTop],
    };


    private static readonly Assembly Core = typeof(DefeatModel).Assembly;

    [Test]
    public void TheAllowedDependenciesFormADag()
    {
        Assert.That(TopologicalOrder(Allowed.ToDictionary(kv => kv.Key, kv => (IEnumerable<string>)kv.Value)), Is.Not.Null,
            "the allowed table itself has a cycle");
    }

    [Test]
    public void EveryNamespaceHasAPlaceInTheLayers()
    {
        var namespaces = Core.GetTypes().Select(t => t.Namespace).Where(IsOurs).OfType<string>().Distinct().Order().ToList();
        Assert.That(namespaces, Is.SubsetOf(Allowed.Keys), "a new namespace needs its row in Allowed and in docs/architecture.md");
    }

    [Test]
    public void NoNamespaceUsesOneItMayNot()
    {
        var edges = Dependencies();
        var forbidden = edges.SelectMany(kv => kv.Value.Where(to => !Allowed.GetValueOrDefault(kv.Key, []).Contains(to))
            .Select(to => $"{kv.Key} -> {to} (through {string.Join(", ", Witnesses(kv.Key, to).Take(3))})")).ToList();
        Assert.That(forbidden, Is.Empty);
        Assert.That(TopologicalOrder(edges.ToDictionary(kv => kv.Key, kv => (IEnumerable<string>)kv.Value)), Is.Not.Null, "the namespaces have a cycle");
    }

    [Test]
    public void AttacksKnowOnlyImagesToLogits()
    {
        // The adaptive suite and the sanity checks know the model's branches: they live in Evaluation. The root holds
        // nothing of the model: result records' base and ScalarOps, the arithmetic every namespace uses.
        Assert.That(Dependencies().GetValueOrDefault("Defeat.Attacks", []), Is.SubsetOf(new[] { "Defeat", "Defeat.Validation" }));
    }

    [Test]
    public void TheCoreDoesNotDependOnTheClipBackbone()
    {
        Assert.That(Core.GetReferencedAssemblies().Select(a => a.Name), Does.Not.Contain("Defeat.Clip"));
    }

    [Test]
    public void TheScanSeesDependenciesInsideMethodBodies()
    {
        // DefeatTrainer uses PgdAttack only inside Train (a local `new PgdAttack(...)`): the IL scan must find it.
        var trainer = typeof(Defeat.Training.DefeatTrainer);
        Assert.That(Referenced(trainer).Select(t => t.FullName), Does.Contain("Defeat.Attacks.PgdAttack"));
        // and a lambda's closure counts for the namespace that wrote it.
        Assert.That(Dependencies()["Defeat.Evaluation"], Does.Contain("Defeat.Model"));
    }

    private static Dictionary<string, HashSet<string>> Dependencies()
    {
        var edges = new Dictionary<string, HashSet<string>>();
        foreach (var type in Core.GetTypes())
        {
            if (type.Namespace is not { } from || !IsOurs(from)) continue;
            var set = edges.TryGetValue(from, out var s) ? s : edges[from] = [];
            foreach (var used in Referenced(type))
                if (used.Assembly == Core && used.Namespace is { } to && IsOurs(to) && to != from) set.Add(to);
        }
        return edges;
    }

    // The compiler embeds a few attribute types (System.Runtime.CompilerServices...) into the assembly; they are not ours.
    private static bool IsOurs(string? ns) => ns is not null && (ns == "Defeat" || ns.StartsWith("Defeat.", StringComparison.Ordinal));

    private static IEnumerable<string> Witnesses(string from, string to) =>
        Core.GetTypes().Where(t => t.Namespace == from && Referenced(t).Any(u => u.Assembly == Core && u.Namespace == to)).Select(t => t.Name);

    private const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// <summary>Every type <paramref name="type"/> refers to: base, interfaces, members' signatures and method bodies.</summary>
    private static HashSet<Type> Referenced(Type type)
    {
        var found = new HashSet<Type>();
        void Add(Type? t)
        {
            if (t is null || t.IsGenericParameter) return;
            if (t.HasElementType) { Add(t.GetElementType()); return; }
            if (t.IsGenericType && !t.IsGenericTypeDefinition)
            {
                found.Add(t.GetGenericTypeDefinition());
                foreach (var a in t.GetGenericArguments()) Add(a);
                return;
            }
            found.Add(t);
        }
        Add(type.BaseType);
        foreach (var i in type.GetInterfaces()) Add(i);
        foreach (var f in type.GetFields(Everything)) Add(f.FieldType);
        foreach (var p in type.GetProperties(Everything)) Add(p.PropertyType);
        foreach (var m in type.GetMethods(Everything).Cast<MethodBase>().Concat(type.GetConstructors(Everything)))
        {
            if (m is MethodInfo mi) Add(mi.ReturnType);
            foreach (var p in m.GetParameters()) Add(p.ParameterType);
            foreach (var member in BodyReferences(m))
            {
                Add(member as Type ?? member.DeclaringType);
                switch (member)
                {
                    case FieldInfo f: Add(f.FieldType); break;
                    case MethodInfo called:
                        Add(called.ReturnType);
                        foreach (var p in called.GetParameters()) Add(p.ParameterType);
                        if (called.IsGenericMethod) foreach (var a in called.GetGenericArguments()) Add(a);
                        break;
                    case ConstructorInfo c:
                        foreach (var p in c.GetParameters()) Add(p.ParameterType);
                        break;
                }
            }
        }
        return found;
    }

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    /// <summary>The types, methods and fields a method body's IL names (by token).</summary>
    private static IEnumerable<MemberInfo> BodyReferences(MethodBase method)
    {
        var il = method.GetMethodBody()?.GetILAsByteArray();
        if (il is null) yield break;
        var typeArgs = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        var methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (int i = 0; i < il.Length;)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            var op = OpCodesByValue[value];
            i += op.Size;
            int operand = op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            if (op.OperandType is OperandType.InlineType or OperandType.InlineTok or OperandType.InlineMethod or OperandType.InlineField)
            {
                MemberInfo? member = null;
                try { member = method.Module.ResolveMember(BitConverter.ToInt32(il, i), typeArgs, methodArgs); }
                catch (ArgumentException) { }
                if (member is not null) yield return member;
            }
            i += operand;
        }
    }

    /// <summary>A topological order of the graph, or null when it has a cycle.</summary>
    private static List<string>? TopologicalOrder(Dictionary<string, IEnumerable<string>> graph)
    {
        var order = new List<string>();
        var state = new Dictionary<string, int>(); // 1 visiting, 2 done
        bool Visit(string node)
        {
            switch (state.GetValueOrDefault(node))
            {
                case 1: return false;
                case 2: return true;
            }
            state[node] = 1;
            foreach (var next in graph.GetValueOrDefault(node, []))
                if (!Visit(next)) return false;
            state[node] = 2;
            order.Add(node);
            return true;
        }
        return graph.Keys.All(Visit) ? order : null;
    }
}
