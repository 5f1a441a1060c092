using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class FeatureCache : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<int>(
                name: "FeaturesFromCache",
                table: "models",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<int>(
                name: "ImagesEmbedded",
                table: "models",
                type: "integer",
                nullable: false,
                defaultValue: 0);

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

            // Models trained before the cache ran every image through the backbone.
            migrationBuilder.Sql("UPDATE models SET \"ImagesEmbedded\" = \"TrainImages\" + \"ValidationImages\";");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "image_features");

            migrationBuilder.DropColumn(
                name: "FeaturesFromCache",
                table: "models");

            migrationBuilder.DropColumn(
                name: "ImagesEmbedded",
                table: "models");
        }
    }
}
