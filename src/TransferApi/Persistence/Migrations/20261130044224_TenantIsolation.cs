using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace TransferApi.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class TenantIsolation : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_models_Name_Version",
                table: "models");

            migrationBuilder.DropPrimaryKey(
                name: "PK_model_aliases",
                table: "model_aliases");

            migrationBuilder.AddColumn<string>(
                name: "Tenant",
                table: "training_jobs",
                type: "character varying(100)",
                maxLength: 100,
                nullable: false,
                defaultValue: "default"); // rows from before tenants belong to the bootstrap key's tenant

            migrationBuilder.AddColumn<string>(
                name: "Tenant",
                table: "models",
                type: "character varying(100)",
                maxLength: 100,
                nullable: false,
                defaultValue: "default"); // rows from before tenants belong to the bootstrap key's tenant

            migrationBuilder.AddColumn<string>(
                name: "Tenant",
                table: "model_aliases",
                type: "character varying(100)",
                maxLength: 100,
                nullable: false,
                defaultValue: "default"); // rows from before tenants belong to the bootstrap key's tenant

            migrationBuilder.AddColumn<string>(
                name: "Tenant",
                table: "datasets",
                type: "character varying(100)",
                maxLength: 100,
                nullable: false,
                defaultValue: "default"); // rows from before tenants belong to the bootstrap key's tenant

            migrationBuilder.AddPrimaryKey(
                name: "PK_model_aliases",
                table: "model_aliases",
                columns: new[] { "Tenant", "Name", "Alias" });

            migrationBuilder.CreateIndex(
                name: "IX_training_jobs_Tenant",
                table: "training_jobs",
                column: "Tenant");

            migrationBuilder.CreateIndex(
                name: "IX_models_Tenant_Name_Version",
                table: "models",
                columns: new[] { "Tenant", "Name", "Version" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_datasets_Tenant",
                table: "datasets",
                column: "Tenant");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_training_jobs_Tenant",
                table: "training_jobs");

            migrationBuilder.DropIndex(
                name: "IX_models_Tenant_Name_Version",
                table: "models");

            migrationBuilder.DropPrimaryKey(
                name: "PK_model_aliases",
                table: "model_aliases");

            migrationBuilder.DropIndex(
                name: "IX_datasets_Tenant",
                table: "datasets");

            migrationBuilder.DropColumn(
                name: "Tenant",
                table: "training_jobs");

            migrationBuilder.DropColumn(
                name: "Tenant",
                table: "models");

            migrationBuilder.DropColumn(
                name: "Tenant",
                table: "model_aliases");

            migrationBuilder.DropColumn(
                name: "Tenant",
                table: "datasets");

            migrationBuilder.AddPrimaryKey(
                name: "PK_model_aliases",
                table: "model_aliases",
                columns: new[] { "Name", "Alias" });

            migrationBuilder.CreateIndex(
                name: "IX_models_Name_Version",
                table: "models",
                columns: new[] { "Name", "Version" },
                unique: true);
        }
    }
}
