using System.Globalization;

namespace Defeat.Validation;

/// <summary>
/// The validators every options record shares. Each throws an <see cref="ArgumentOutOfRangeException"/> whose
/// parameter name is the option and whose message reads <c>"{name} must be {what was expected}, got {value}."</c>
/// </summary>
public static class OptionChecks
{
    /// <summary>Requires <paramref name="value"/> &gt;= <paramref name="minimum"/>.</summary>
    /// <param name="value">The option's value.</param>
    /// <param name="minimum">The smallest allowed value.</param>
    /// <param name="name">The option's name.</param>
    public static void AtLeast(long value, long minimum, string name)
    {
        if (value < minimum) throw OutOfRange(name, value, $">= {minimum}");
    }

    /// <summary>Requires a finite <paramref name="value"/> &gt;= 0 (a loss weight, a threshold where 0 means off).</summary>
    /// <param name="value">The option's value.</param>
    /// <param name="name">The option's name.</param>
    public static void NonNegative(double value, string name)
    {
        if (!(value >= 0) || double.IsInfinity(value)) throw OutOfRange(name, value, "a finite number >= 0");
    }

    /// <summary>Requires a finite <paramref name="value"/> &gt; 0 (a learning rate, a scale, a temperature).</summary>
    /// <param name="value">The option's value.</param>
    /// <param name="name">The option's name.</param>
    public static void Positive(double value, string name)
    {
        if (!(value > 0) || double.IsInfinity(value)) throw OutOfRange(name, value, "a finite number > 0");
    }

    /// <summary>Requires <paramref name="value"/> in the interval from <paramref name="minimum"/> to <paramref name="maximum"/>.</summary>
    /// <param name="value">The option's value.</param>
    /// <param name="minimum">Lower end.</param>
    /// <param name="maximum">Upper end.</param>
    /// <param name="name">The option's name.</param>
    /// <param name="minimumIncluded">Whether <paramref name="minimum"/> itself is allowed.</param>
    /// <param name="maximumIncluded">Whether <paramref name="maximum"/> itself is allowed.</param>
    public static void InRange(double value, double minimum, double maximum, string name, bool minimumIncluded = true, bool maximumIncluded = true)
    {
        bool ok = (minimumIncluded ? value >= minimum : value > minimum) && (maximumIncluded ? value <= maximum : value < maximum);
        if (!ok)
            throw OutOfRange(name, value, string.Create(CultureInfo.InvariantCulture,
                $"in {(minimumIncluded ? '[' : '(')}{minimum}, {maximum}{(maximumIncluded ? ']' : ')')}"));
    }

    /// <summary>Requires <paramref name="value"/> to be a named member of its enum.</summary>
    /// <typeparam name="TEnum">The enum.</typeparam>
    /// <param name="value">The option's value.</param>
    /// <param name="name">The option's name.</param>
    public static void Defined<TEnum>(TEnum value, string name) where TEnum : struct, Enum
    {
        if (!Enum.IsDefined(value)) throw OutOfRange(name, value, $"one of {string.Join(", ", Enum.GetNames<TEnum>())}");
    }

    private static ArgumentOutOfRangeException OutOfRange(string name, object value, string expected) =>
        new(name, value, string.Create(CultureInfo.InvariantCulture, $"{name} must be {expected}, got {value}."));
}
