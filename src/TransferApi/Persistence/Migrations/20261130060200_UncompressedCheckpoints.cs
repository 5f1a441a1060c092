using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class UncompressedCheckpoints : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Checkpoints are float weights and optimizer moments (hundreds of MB when stages are fine-tuned):
            // compression gains little there and costs seconds per save, so they are stored out of line as they are.
            migrationBuilder.Sql("ALTER TABLE training_checkpoints ALTER COLUMN \"Data\" SET STORAGE EXTERNAL;");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("ALTER TABLE training_checkpoints ALTER COLUMN \"Data\" SET STORAGE EXTENDED;");
        }
    }
}
