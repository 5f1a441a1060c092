using Microsoft.AspNetCore.Http.HttpResults;

namespace TransferApi.Features;

/// <summary>RFC 9457 answers shared by the features; each names the field at fault first ("id: ...").</summary>
public static class Problems
{
    public static ProblemHttpResult NotFound(string what, Guid id) =>
        TypedResults.Problem($"id: no {what} has id {id}.", statusCode: StatusCodes.Status404NotFound, title: $"{char.ToUpperInvariant(what[0])}{what[1..]} not found");

    public static ProblemHttpResult Conflict(string title, string detail) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status409Conflict, title: title);
}
