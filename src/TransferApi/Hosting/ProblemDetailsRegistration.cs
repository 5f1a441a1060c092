using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using TransferApi.Http;
using TransferApi.Services;

namespace TransferApi.Hosting;

public static class ProblemDetailsRegistration
{
    /// <summary>Every error answer is RFC 9457 problem details that says what was wrong.</summary>
    public static void AddHttpProblemDetails(this IServiceCollection services)
    {
        // Routing refuses other content types with a bare 415; say which one and where the accepted ones are listed.
        services.AddProblemDetails(o =>
            o.CustomizeProblemDetails = context =>
            {
                var request = context.HttpContext.Request;
                if (
                    context.ProblemDetails.Status == StatusCodes.Status415UnsupportedMediaType
                    && context.ProblemDetails.Detail is null
                )
                    context.ProblemDetails.Detail =
                        $"Content-Type: '{request.ContentType}' is not accepted by "
                        + $"{request.Method} {request.Path}; /swagger lists what is.";
            }
        );
        services.AddExceptionHandler<ProblemDetailsExceptionHandler>();
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
    }
}

/// <summary>
/// Turns domain errors thrown below the endpoints, and request-binding failures (missing form fields, malformed
/// JSON, bodies over the size limits), into problem details with their 4xx status. Anything else stays a logged
/// 500.
/// </summary>
internal sealed class ProblemDetailsExceptionHandler(IProblemDetailsService problemDetails) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(
        HttpContext context,
        Exception exception,
        CancellationToken cancellationToken
    )
    {
        var problem = exception switch
        {
            DomainException error => new ProblemDetails
            {
                Status = Problems.StatusOf(error.Kind),
                Title = error.Title,
                Detail = error.Message,
            },
            BadHttpRequestException bad => BindingProblem(bad),
            _ => null,
        };
        if (problem is null)
            return false;
        context.Response.StatusCode = problem.Status!.Value;
        return await problemDetails.TryWriteAsync(
            new ProblemDetailsContext
            {
                HttpContext = context,
                Exception = exception,
                ProblemDetails = problem,
            }
        );
    }

    private static ProblemDetails BindingProblem(BadHttpRequestException bad)
    {
        // Form readers signal their size limits with InvalidDataException; Kestrel's own limit is already 413.
        var status = bad.InnerException is InvalidDataException ? StatusCodes.Status413PayloadTooLarge : bad.StatusCode;
        return new ProblemDetails
        {
            Status = status,
            Title = status == StatusCodes.Status413PayloadTooLarge ? "Request too large" : "Invalid request",
            Detail = bad.InnerException is { } inner ? $"{bad.Message} {inner.Message}" : bad.Message,
        };
    }
}
