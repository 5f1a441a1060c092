using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;

namespace TransferApi.Infrastructure;

/// <summary>
/// Turns request-binding failures (missing form fields, malformed JSON, bodies over the size limits) into
/// problem details that say what was wrong, with their 4xx status. Anything else stays a logged 500.
/// </summary>
internal sealed class ProblemDetailsExceptionHandler(IProblemDetailsService problemDetails) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is not BadHttpRequestException bad) return false;
        // Form readers signal their size limits with InvalidDataException; Kestrel's own limit is already 413.
        var status = bad.InnerException is InvalidDataException ? StatusCodes.Status413PayloadTooLarge : bad.StatusCode;
        context.Response.StatusCode = status;
        return await problemDetails.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            Exception = exception,
            ProblemDetails = new ProblemDetails
            {
                Status = status,
                Title = status == StatusCodes.Status413PayloadTooLarge ? "Request too large" : "Invalid request",
                Detail = bad.InnerException is { } inner ? $"{bad.Message} {inner.Message}" : bad.Message,
            },
        });
    }
}
