using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class DatasetSplitsAndImageStats : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "ImageCount",
                table: "datasets");

            migrationBuilder.AddColumn<long>(
                name: "SplitSeed",
                table: "datasets",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<double>(
                name: "TestFraction",
                table: "datasets",
                type: "double precision",
                nullable: false,
                defaultValue: 0.0);

            migrationBuilder.AddColumn<double>(
                name: "ValidationFraction",
                table: "datasets",
                type: "double precision",
                nullable: false,
                defaultValue: 0.0);

            migrationBuilder.AddColumn<int>(
                name: "SizeBytes",
                table: "dataset_images",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<bool>(
                name: "SplitFixed",
                table: "dataset_images",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            // Existing rows: sizes from the stored bytes, the previous split defaults, folder splits kept fixed.
            migrationBuilder.Sql("UPDATE dataset_images SET \"SizeBytes\" = octet_length(\"Data\"), \"SplitFixed\" = \"Split\" <> 'Unassigned';");
            migrationBuilder.Sql("UPDATE datasets SET \"ValidationFraction\" = 0.2, \"SplitSeed\" = 42;");

            migrationBuilder.CreateIndex(
                name: "IX_dataset_images_DatasetId_Sha256",
                table: "dataset_images",
                columns: new[] { "DatasetId", "Sha256" },
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_dataset_images_DatasetId_Sha256",
                table: "dataset_images");

            migrationBuilder.DropColumn(
                name: "SplitSeed",
                table: "datasets");

            migrationBuilder.DropColumn(
                name: "TestFraction",
                table: "datasets");

            migrationBuilder.DropColumn(
                name: "ValidationFraction",
                table: "datasets");

            migrationBuilder.DropColumn(
                name: "SizeBytes",
                table: "dataset_images");

            migrationBuilder.DropColumn(
                name: "SplitFixed",
                table: "dataset_images");

            migrationBuilder.AddColumn<int>(
                name: "ImageCount",
                table: "datasets",
                type: "integer",
                nullable: false,
                defaultValue: 0);
        }
    }
}
