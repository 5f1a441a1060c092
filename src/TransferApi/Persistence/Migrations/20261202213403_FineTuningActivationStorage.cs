using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class FineTuningActivationStorage : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "ActivationBudgetBytes",
                table: "training_jobs",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<long>(
                name: "ActivationBytes",
                table: "training_jobs",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "ActivationStorage",
                table: "training_jobs",
                type: "character varying(16)",
                maxLength: 16,
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "ActivationBudgetBytes",
                table: "training_jobs");

            migrationBuilder.DropColumn(
                name: "ActivationBytes",
                table: "training_jobs");

            migrationBuilder.DropColumn(
                name: "ActivationStorage",
                table: "training_jobs");
        }
    }
}
