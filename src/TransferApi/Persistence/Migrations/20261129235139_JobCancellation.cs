using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class JobCancellation : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<bool>(
                name: "CancelRequested",
                table: "training_jobs",
                type: "boolean",
                nullable: false,
                defaultValue: false);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "CancelRequested",
                table: "training_jobs");
        }
    }
}
