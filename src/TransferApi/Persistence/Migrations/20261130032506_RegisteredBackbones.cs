using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class RegisteredBackbones : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "backbone_weights",
                columns: table => new
                {
                    Sha256 = table.Column<byte[]>(type: "bytea", nullable: false),
                    Data = table.Column<byte[]>(type: "bytea", nullable: false),
                    CreatedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_backbone_weights", x => x.Sha256);
                });

            migrationBuilder.CreateTable(
                name: "backbones",
                columns: table => new
                {
                    Id = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    Architecture = table.Column<string>(type: "character varying(50)", maxLength: 50, nullable: false),
                    Preprocessing = table.Column<string>(type: "jsonb", nullable: false),
                    WeightsSha256 = table.Column<byte[]>(type: "bytea", nullable: false),
                    ParameterCount = table.Column<long>(type: "bigint", nullable: false),
                    Source = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: false),
                    CreatedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_backbones", x => x.Id);
                    table.ForeignKey(
                        name: "FK_backbones_backbone_weights_WeightsSha256",
                        column: x => x.WeightsSha256,
                        principalTable: "backbone_weights",
                        principalColumn: "Sha256",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateIndex(
                name: "IX_backbones_WeightsSha256",
                table: "backbones",
                column: "WeightsSha256");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "backbones");

            migrationBuilder.DropTable(
                name: "backbone_weights");
        }
    }
}
