using Microsoft.AspNetCore.Http.HttpResults;
using TransferApi.Services;

namespace TransferApi.Http;

/// <summary>
/// RFC 9457 answers shared by the features, each naming the field at fault first ("id: ..."), and the one place
/// domain errors become HTTP statuses.
/// </summary>
public static class Problems
{
    /// <param name="field">The request field that named it (default: the route's id).</param>
    public static ProblemHttpResult NotFound(string what, Guid id, string field = "id") =>
        TypedResults.Problem(
            $"{field}: no {what} has id {id}.",
            statusCode: StatusCodes.Status404NotFound,
            title: $"{char.ToUpperInvariant(what[0])}{what[1..]} not found"
        );

    public static ProblemHttpResult BadRequest(string title, string detail) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status400BadRequest, title: title);

    public static ProblemHttpResult Conflict(string title, string detail) =>
        TypedResults.Problem(detail, statusCode: StatusCodes.Status409Conflict, title: title);

    public static ProblemHttpResult From(DomainException error) =>
        TypedResults.Problem(error.Message, statusCode: StatusOf(error.Kind), title: error.Title);

    public static int StatusOf(ErrorKind kind) =>
        kind switch
        {
            ErrorKind.InvalidInput => StatusCodes.Status400BadRequest,
            ErrorKind.LimitExceeded => StatusCodes.Status413PayloadTooLarge,
            ErrorKind.Unusable => StatusCodes.Status422UnprocessableEntity,
            ErrorKind.UnsupportedFormat => StatusCodes.Status415UnsupportedMediaType,
            ErrorKind.Conflict => StatusCodes.Status409Conflict,
            ErrorKind.NotFound => StatusCodes.Status404NotFound,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
        };
}
