namespace TransferApi.Services;

/// <summary>What kind of mistake or conflict a <see cref="DomainException"/> reports; the HTTP edge picks the
/// status.</summary>
public enum ErrorKind
{
    /// <summary>The input is malformed, unsafe or missing a part.</summary>
    InvalidInput,

    /// <summary>The input is over a configured limit or quota (bytes, entries, pixels, images).</summary>
    LimitExceeded,

    /// <summary>The input is well formed but cannot be used (too few classes, weights that do not fit).</summary>
    Unusable,

    /// <summary>The input is in a format the operation does not take.</summary>
    UnsupportedFormat,

    /// <summary>The state of stored data forbids it now (in use, taken, changed concurrently).</summary>
    Conflict,

    /// <summary>What the request names does not exist (for this tenant).</summary>
    NotFound,
}

/// <summary>
/// A request the service refuses, in domain terms: a kind, a short title and a detail that names the field or file
/// at fault first ("file: ..."). Services throw it; <c>Http.Problems</c> turns it into problem details.
/// </summary>
public sealed class DomainException(ErrorKind kind, string title, string detail) : Exception(detail)
{
    public ErrorKind Kind { get; } = kind;
    public string Title { get; } = title;
}
