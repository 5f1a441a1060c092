using Microsoft.EntityFrameworkCore;

namespace TransferApi.Http;

/// <summary>A page of a list, newest first.</summary>
/// <param name="Items">This page's items.</param>
/// <param name="PageNumber">The page, from 1.</param>
/// <param name="PageSize">Items per page (at most 200).</param>
/// <param name="TotalCount">Items in the whole list.</param>
public sealed record Page<T>(IReadOnlyList<T> Items, int PageNumber, int PageSize, int TotalCount)
{
    /// <summary>The same page with each item mapped (rows to responses).</summary>
    public Page<TOut> Select<TOut>(Func<T, TOut> map) =>
        new(Items.Select(map).ToList(), PageNumber, PageSize, TotalCount);
}

public static class Paging
{
    public const int MaxPageSize = 200;

    public static (int Page, int PageSize) Normalize(int? page, int? pageSize) =>
        (Math.Max(1, page ?? 1), Math.Clamp(pageSize ?? 20, 1, MaxPageSize));

    public static async Task<Page<T>> ToPageAsync<T>(
        this IQueryable<T> query,
        int? page,
        int? pageSize,
        CancellationToken cancellation
    )
    {
        var (p, size) = Normalize(page, pageSize);
        var total = await query.CountAsync(cancellation);
        var items = await query.Skip((p - 1) * size).Take(size).ToListAsync(cancellation);
        return new Page<T>(items, p, size, total);
    }
}
