using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class JobTuning : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Tuning",
                table: "training_jobs",
                type: "jsonb",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "Tuning",
                table: "training_jobs");
        }
    }
}
