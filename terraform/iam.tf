# Identities. Nodes run as a minimal service account (not the Compute Engine default, which is Editor). The
# oxinfer pods (Kubernetes SA inference/oxinfer) act as oxinfer-models, which may only read the model bucket.
# The custom metrics adapter reads Cloud Monitoring to give the HPA oxinfer_inflight_requests.

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_service_account" "nodes" {
  account_id   = "geoml-gke-nodes"
  display_name = "geoml-gke node pools"
  depends_on   = [google_project_service.required]
}

# Logging, monitoring and metadata writes that every GKE node needs, and nothing else.
resource "google_project_iam_member" "nodes_default" {
  project = var.project_id
  role    = "roles/container.defaultNodeServiceAccount"
  member  = google_service_account.nodes.member
}

resource "google_artifact_registry_repository_iam_member" "nodes_pull" {
  location   = google_artifact_registry_repository.oxinfer.location
  repository = google_artifact_registry_repository.oxinfer.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.nodes.member
}

resource "google_service_account" "oxinfer_models" {
  account_id   = "oxinfer-models"
  display_name = "oxinfer model repository reader"
  description  = "Used by the oxinfer pods (KSA inference/oxinfer) through Workload Identity to read the model bucket."
  depends_on   = [google_project_service.required]
}

resource "google_storage_bucket_iam_member" "models_read" {
  bucket = google_storage_bucket.model_repository.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.oxinfer_models.member
}

# Workload Identity: the Kubernetes SA inference/oxinfer may act as oxinfer-models. The cluster must exist first,
# because it creates the project's workload identity pool.
resource "google_service_account_iam_member" "oxinfer_workload_identity" {
  service_account_id = google_service_account.oxinfer_models.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[inference/oxinfer]"
  depends_on         = [google_container_cluster.gke]
}

# The custom-metrics-stackdriver-adapter (namespace custom-metrics) reads the Managed Prometheus series for the
# HPA; it is granted directly as a Workload Identity principal, without a Google service account.
resource "google_project_iam_member" "metrics_adapter" {
  project    = var.project_id
  role       = "roles/monitoring.viewer"
  member     = "principal://iam.googleapis.com/projects/${data.google_project.this.number}/locations/global/workloadIdentityPools/${var.project_id}.svc.id.goog/subject/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter"
  depends_on = [google_container_cluster.gke]
}

# Who changed the model repository (uploads, deletions, IAM) is kept in Data Access audit logs. Reads are not
# logged: every FUSE metadata refresh of every pod would be a log entry.
resource "google_project_iam_audit_config" "storage" {
  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "ADMIN_READ"
  }

  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
