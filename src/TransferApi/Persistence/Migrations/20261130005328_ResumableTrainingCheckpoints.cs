using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class ResumableTrainingCheckpoints : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<int>(
                name: "CheckpointEpoch",
                table: "training_jobs",
                type: "integer",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "ResumedFromEpoch",
                table: "training_jobs",
                type: "integer",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "training_checkpoints",
                columns: table => new
                {
                    JobId = table.Column<Guid>(type: "uuid", nullable: false),
                    Epoch = table.Column<int>(type: "integer", nullable: false),
                    Data = table.Column<byte[]>(type: "bytea", nullable: false),
                    SavedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_training_checkpoints", x => x.JobId);
                    table.ForeignKey(
                        name: "FK_training_checkpoints_training_jobs_JobId",
                        column: x => x.JobId,
                        principalTable: "training_jobs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "training_checkpoints");

            migrationBuilder.DropColumn(
                name: "CheckpointEpoch",
                table: "training_jobs");

            migrationBuilder.DropColumn(
                name: "ResumedFromEpoch",
                table: "training_jobs");
        }
    }
}
