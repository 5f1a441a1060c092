using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class BatchPredictions : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "batch_predictions",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    Tenant = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    ModelId = table.Column<Guid>(type: "uuid", nullable: false),
                    DatasetId = table.Column<Guid>(type: "uuid", nullable: false),
                    Split = table.Column<string>(type: "character varying(20)", maxLength: 20, nullable: true),
                    TopK = table.Column<int>(type: "integer", nullable: false),
                    Status = table.Column<string>(type: "character varying(20)", maxLength: 20, nullable: false),
                    CancelRequested = table.Column<bool>(type: "boolean", nullable: false),
                    ImagesTotal = table.Column<int>(type: "integer", nullable: false),
                    ImagesDone = table.Column<int>(type: "integer", nullable: false),
                    ImagesFromCache = table.Column<int>(type: "integer", nullable: false),
                    Error = table.Column<string>(type: "text", nullable: true),
                    HangfireJobId = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    CreatedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    StartedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    FinishedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_batch_predictions", x => x.Id);
                    table.ForeignKey(
                        name: "FK_batch_predictions_datasets_DatasetId",
                        column: x => x.DatasetId,
                        principalTable: "datasets",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                    table.ForeignKey(
                        name: "FK_batch_predictions_models_ModelId",
                        column: x => x.ModelId,
                        principalTable: "models",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "batch_prediction_results",
                columns: table => new
                {
                    BatchId = table.Column<Guid>(type: "uuid", nullable: false),
                    Position = table.Column<int>(type: "integer", nullable: false),
                    ImageId = table.Column<Guid>(type: "uuid", nullable: false),
                    FileName = table.Column<string>(type: "character varying(1024)", maxLength: 1024, nullable: false),
                    Label = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    Split = table.Column<string>(type: "character varying(20)", maxLength: 20, nullable: false),
                    Predictions = table.Column<string>(type: "jsonb", nullable: false),
                    Novelty = table.Column<double>(type: "double precision", nullable: true),
                    Unknown = table.Column<bool>(type: "boolean", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_batch_prediction_results", x => new { x.BatchId, x.Position });
                    table.ForeignKey(
                        name: "FK_batch_prediction_results_batch_predictions_BatchId",
                        column: x => x.BatchId,
                        principalTable: "batch_predictions",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_batch_predictions_DatasetId",
                table: "batch_predictions",
                column: "DatasetId");

            migrationBuilder.CreateIndex(
                name: "IX_batch_predictions_ModelId_CreatedAt",
                table: "batch_predictions",
                columns: new[] { "ModelId", "CreatedAt" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "batch_prediction_results");

            migrationBuilder.DropTable(
                name: "batch_predictions");
        }
    }
}
