using System;
using System.Collections.Generic;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class ModelTrust : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Thresholds",
                table: "training_jobs",
                type: "jsonb",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Calibration",
                table: "models",
                type: "jsonb",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "Novelty",
                table: "models",
                type: "jsonb",
                nullable: true);

            migrationBuilder.AddColumn<float[]>(
                name: "NoveltyBank",
                table: "models",
                type: "real[]",
                nullable: true);

            migrationBuilder.AddColumn<List<double>>(
                name: "Thresholds",
                table: "models",
                type: "double precision[]",
                nullable: true);

            migrationBuilder.CreateTable(
                name: "evaluated_images",
                columns: table => new
                {
                    JobId = table.Column<Guid>(type: "uuid", nullable: false),
                    ImageId = table.Column<Guid>(type: "uuid", nullable: false),
                    Label = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    Predicted = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    Probability = table.Column<double>(type: "double precision", nullable: false),
                    Loss = table.Column<double>(type: "double precision", nullable: false),
                    Novelty = table.Column<double>(type: "double precision", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_evaluated_images", x => new { x.JobId, x.ImageId });
                    table.ForeignKey(
                        name: "FK_evaluated_images_dataset_images_ImageId",
                        column: x => x.ImageId,
                        principalTable: "dataset_images",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                    table.ForeignKey(
                        name: "FK_evaluated_images_training_jobs_JobId",
                        column: x => x.JobId,
                        principalTable: "training_jobs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_evaluated_images_ImageId",
                table: "evaluated_images",
                column: "ImageId");

            migrationBuilder.CreateIndex(
                name: "IX_evaluated_images_JobId_Loss",
                table: "evaluated_images",
                columns: new[] { "JobId", "Loss" },
                descending: new[] { false, true });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "evaluated_images");

            migrationBuilder.DropColumn(
                name: "Thresholds",
                table: "training_jobs");

            migrationBuilder.DropColumn(
                name: "Calibration",
                table: "models");

            migrationBuilder.DropColumn(
                name: "Novelty",
                table: "models");

            migrationBuilder.DropColumn(
                name: "NoveltyBank",
                table: "models");

            migrationBuilder.DropColumn(
                name: "Thresholds",
                table: "models");
        }
    }
}
