using System;
using System.Collections.Generic;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class Initial : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "datasets",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    Name = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    CreatedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    ValidationFraction = table.Column<double>(type: "double precision", nullable: false),
                    TestFraction = table.Column<double>(type: "double precision", nullable: false),
                    SplitSeed = table.Column<long>(type: "bigint", nullable: false),
                    rejected = table.Column<string>(type: "jsonb", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_datasets", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "image_features",
                columns: table => new
                {
                    BackboneId = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    Sha256 = table.Column<byte[]>(type: "bytea", nullable: false),
                    Values = table.Column<float[]>(type: "real[]", nullable: false),
                    CreatedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_image_features", x => new { x.BackboneId, x.Sha256 });
                });

            migrationBuilder.CreateTable(
                name: "dataset_images",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    DatasetId = table.Column<Guid>(type: "uuid", nullable: false),
                    Label = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    Split = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    SplitFixed = table.Column<bool>(type: "boolean", nullable: false),
                    FileName = table.Column<string>(type: "character varying(1024)", maxLength: 1024, nullable: false),
                    Format = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: false),
                    Width = table.Column<int>(type: "integer", nullable: false),
                    Height = table.Column<int>(type: "integer", nullable: false),
                    SizeBytes = table.Column<int>(type: "integer", nullable: false),
                    Sha256 = table.Column<byte[]>(type: "bytea", nullable: false),
                    Data = table.Column<byte[]>(type: "bytea", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_dataset_images", x => x.Id);
                    table.ForeignKey(
                        name: "FK_dataset_images_datasets_DatasetId",
                        column: x => x.DatasetId,
                        principalTable: "datasets",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "training_jobs",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    DatasetId = table.Column<Guid>(type: "uuid", nullable: false),
                    Status = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    CreatedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    StartedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    FinishedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    Backbone = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    Options = table.Column<string>(type: "jsonb", nullable: false),
                    Progress = table.Column<string>(type: "jsonb", nullable: false),
                    ModelId = table.Column<Guid>(type: "uuid", nullable: true),
                    Error = table.Column<string>(type: "text", nullable: true),
                    HangfireJobId = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    Report = table.Column<string>(type: "jsonb", nullable: true),
                    CancelRequested = table.Column<bool>(type: "boolean", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_training_jobs", x => x.Id);
                    table.ForeignKey(
                        name: "FK_training_jobs_datasets_DatasetId",
                        column: x => x.DatasetId,
                        principalTable: "datasets",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "models",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "uuid", nullable: false),
                    JobId = table.Column<Guid>(type: "uuid", nullable: false),
                    DatasetId = table.Column<Guid>(type: "uuid", nullable: false),
                    Backbone = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    Labels = table.Column<List<string>>(type: "text[]", nullable: false),
                    FeatureSize = table.Column<int>(type: "integer", nullable: false),
                    Head = table.Column<string>(type: "jsonb", nullable: false),
                    HeadWeights = table.Column<byte[]>(type: "bytea", nullable: false),
                    FineTunedStages = table.Column<int>(type: "integer", nullable: false),
                    TailWeights = table.Column<byte[]>(type: "bytea", nullable: true),
                    CreatedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    ValAccuracy = table.Column<double>(type: "double precision", nullable: true),
                    ValLoss = table.Column<double>(type: "double precision", nullable: true),
                    TrainLoss = table.Column<double>(type: "double precision", nullable: false),
                    TrainImages = table.Column<int>(type: "integer", nullable: false),
                    ValidationImages = table.Column<int>(type: "integer", nullable: false),
                    FeatureExtractionSeconds = table.Column<double>(type: "double precision", nullable: false),
                    HeadTrainingSeconds = table.Column<double>(type: "double precision", nullable: false),
                    ImagesEmbedded = table.Column<int>(type: "integer", nullable: false),
                    FeaturesFromCache = table.Column<int>(type: "integer", nullable: false),
                    BestEpoch = table.Column<int>(type: "integer", nullable: false),
                    StoppedEarly = table.Column<bool>(type: "boolean", nullable: false),
                    preprocessing = table.Column<string>(type: "jsonb", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_models", x => x.Id);
                    table.ForeignKey(
                        name: "FK_models_training_jobs_JobId",
                        column: x => x.JobId,
                        principalTable: "training_jobs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "training_metrics",
                columns: table => new
                {
                    JobId = table.Column<Guid>(type: "uuid", nullable: false),
                    Epoch = table.Column<int>(type: "integer", nullable: false),
                    TrainLoss = table.Column<double>(type: "double precision", nullable: false),
                    ValLoss = table.Column<double>(type: "double precision", nullable: true),
                    ValAccuracy = table.Column<double>(type: "double precision", nullable: true),
                    LearningRate = table.Column<double>(type: "double precision", nullable: false),
                    RecordedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_training_metrics", x => new { x.JobId, x.Epoch });
                    table.ForeignKey(
                        name: "FK_training_metrics_training_jobs_JobId",
                        column: x => x.JobId,
                        principalTable: "training_jobs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_dataset_images_DatasetId_Label",
                table: "dataset_images",
                columns: new[] { "DatasetId", "Label" });

            migrationBuilder.CreateIndex(
                name: "IX_dataset_images_DatasetId_Sha256",
                table: "dataset_images",
                columns: new[] { "DatasetId", "Sha256" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_datasets_CreatedAt",
                table: "datasets",
                column: "CreatedAt");

            migrationBuilder.CreateIndex(
                name: "IX_models_CreatedAt",
                table: "models",
                column: "CreatedAt");

            migrationBuilder.CreateIndex(
                name: "IX_models_JobId",
                table: "models",
                column: "JobId",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_training_jobs_CreatedAt",
                table: "training_jobs",
                column: "CreatedAt");

            migrationBuilder.CreateIndex(
                name: "IX_training_jobs_DatasetId",
                table: "training_jobs",
                column: "DatasetId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "dataset_images");

            migrationBuilder.DropTable(
                name: "image_features");

            migrationBuilder.DropTable(
                name: "models");

            migrationBuilder.DropTable(
                name: "training_metrics");

            migrationBuilder.DropTable(
                name: "training_jobs");

            migrationBuilder.DropTable(
                name: "datasets");
        }
    }
}
