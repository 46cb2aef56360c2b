# Values the deployment steps need (docs/deploy.md): credentials, image path, bucket, service accounts.

output "cluster_name" {
  description = "Name of the regional GKE cluster."
  value       = google_container_cluster.gke.name
}

output "cluster_location" {
  description = "Region of the cluster (for gcloud container clusters get-credentials --region)."
  value       = google_container_cluster.gke.location
}

output "get_credentials_command" {
  description = "Command that writes kubectl credentials for the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.gke.name} --region ${var.region} --project ${var.project_id}"
}

output "workload_identity_pool" {
  description = "Workload Identity pool of the project's clusters."
  value       = "${var.project_id}.svc.id.goog"
}

output "model_repository_bucket" {
  description = "Bucket holding the model repository (gs://<project>-model-repository)."
  value       = google_storage_bucket.model_repository.name
}

output "image_repository" {
  description = "Docker path of the oxinfer images in Artifact Registry (append :<version> or :<version>-gpu)."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.oxinfer.repository_id}/oxinfer"
}

output "models_service_account" {
  description = "Google service account the oxinfer pods act as (annotation iam.gke.io/gcp-service-account)."
  value       = google_service_account.oxinfer_models.email
}

output "node_service_account" {
  description = "Service account of the node pools."
  value       = google_service_account.nodes.email
}

output "node_pools" {
  description = "Node pool names."
  value       = sort([for p in google_container_node_pool.pools : p.name])
}
