using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class FairDispatchAndCheckpointVacuum : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<DateTime>(
                name: "DispatchedAt",
                table: "training_jobs",
                type: "timestamp with time zone",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "IX_training_jobs_Status_Tenant",
                table: "training_jobs",
                columns: new[] { "Status", "Tenant" });

            // Jobs queued before the dispatcher existed are already in Hangfire's queue: count them as dispatched.
            migrationBuilder.Sql("""
                UPDATE training_jobs SET "DispatchedAt" = "CreatedAt" WHERE "HangfireJobId" IS NOT NULL AND "Status" IN ('Queued', 'Running')
                """);

            // The service vacuums the checkpoint table after each write; should one be missed (a crash), autovacuum
            // takes it at its next round instead of waiting for a fifth of the table to be dead.
            migrationBuilder.Sql("""
                ALTER TABLE training_checkpoints SET (
                    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1, autovacuum_vacuum_cost_delay = 0,
                    toast.autovacuum_vacuum_scale_factor = 0, toast.autovacuum_vacuum_threshold = 1, toast.autovacuum_vacuum_cost_delay = 0)
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                ALTER TABLE training_checkpoints RESET (
                    autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay,
                    toast.autovacuum_vacuum_scale_factor, toast.autovacuum_vacuum_threshold, toast.autovacuum_vacuum_cost_delay)
                """);

            migrationBuilder.DropIndex(
                name: "IX_training_jobs_Status_Tenant",
                table: "training_jobs");

            migrationBuilder.DropColumn(
                name: "DispatchedAt",
                table: "training_jobs");
        }
    }
}
