using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class TrainingRecipe : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<double>(
                name: "LearningRate",
                table: "training_metrics",
                type: "double precision",
                nullable: false,
                defaultValue: 0.0);

            migrationBuilder.AddColumn<string>(
                name: "Options",
                table: "training_jobs",
                type: "jsonb",
                nullable: false,
                defaultValue: "{}");

            migrationBuilder.AddColumn<int>(
                name: "BestEpoch",
                table: "models",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<string>(
                name: "Head",
                table: "models",
                type: "jsonb",
                nullable: false,
                defaultValue: "{\"Kind\":\"Linear\",\"HiddenUnits\":256,\"Dropout\":0.2}");

            migrationBuilder.AddColumn<bool>(
                name: "StoppedEarly",
                table: "models",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            // Existing jobs: their five options move into the recipe (the rest take the defaults they ran with);
            // their metrics ran at the job's constant learning rate; their models hold the last epoch.
            migrationBuilder.Sql("""
                UPDATE training_jobs SET "Options" = jsonb_build_object(
                    'Epochs', "Epochs", 'BatchSize', "BatchSize", 'LearningRate', "LearningRate",
                    'ValidationFraction', "ValidationFraction", 'Seed', "Seed");
                UPDATE training_metrics m SET "LearningRate" = j."LearningRate" FROM training_jobs j WHERE j."Id" = m."JobId";
                UPDATE models m SET "BestEpoch" = j."Epochs" FROM training_jobs j WHERE j."Id" = m."JobId";
                """);

            migrationBuilder.DropColumn(name: "BatchSize", table: "training_jobs");
            migrationBuilder.DropColumn(name: "Epochs", table: "training_jobs");
            migrationBuilder.DropColumn(name: "LearningRate", table: "training_jobs");
            migrationBuilder.DropColumn(name: "Seed", table: "training_jobs");
            migrationBuilder.DropColumn(name: "ValidationFraction", table: "training_jobs");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "LearningRate",
                table: "training_metrics");

            migrationBuilder.DropColumn(
                name: "Options",
                table: "training_jobs");

            migrationBuilder.DropColumn(
                name: "BestEpoch",
                table: "models");

            migrationBuilder.DropColumn(
                name: "Head",
                table: "models");

            migrationBuilder.DropColumn(
                name: "StoppedEarly",
                table: "models");

            migrationBuilder.AddColumn<int>(
                name: "BatchSize",
                table: "training_jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<int>(
                name: "Epochs",
                table: "training_jobs",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<double>(
                name: "LearningRate",
                table: "training_jobs",
                type: "double precision",
                nullable: false,
                defaultValue: 0.0);

            migrationBuilder.AddColumn<long>(
                name: "Seed",
                table: "training_jobs",
                type: "bigint",
                nullable: false,
                defaultValue: 0L);

            migrationBuilder.AddColumn<double>(
                name: "ValidationFraction",
                table: "training_jobs",
                type: "double precision",
                nullable: false,
                defaultValue: 0.0);
        }
    }
}
