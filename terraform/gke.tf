# The regional cluster geoml-gke: control plane and node pools in three zones, private nodes, Workload Identity
# (pods get Google identities without keys), Dataplane V2 (enforces NetworkPolicy), Managed Prometheus (scrapes
# the PodMonitoring objects, feeds dashboards and the HPA's custom metric) and the Cloud Storage FUSE driver
# (mounts the model bucket). Node pools are separate resources (node_pools.tf), so the default pool is removed.
resource "google_container_cluster" "gke" {
  # checkov:skip=CKV_GCP_12:Dataplane V2 (datapath_provider ADVANCED_DATAPATH) enforces NetworkPolicy itself; the legacy Calico network_policy block conflicts with it
  # checkov:skip=CKV_GCP_65:access is granted with IAM roles per project; Google Groups for RBAC needs a Workspace group gke-security-groups@<domain>, to be added when the organisation has one
  name           = "geoml-gke"
  location       = var.region
  node_locations = var.zones

  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = var.deletion_protection

  network           = google_compute_network.vpc.id
  subnetwork        = google_compute_subnetwork.gke.id
  networking_mode   = "VPC_NATIVE"
  datapath_provider = "ADVANCED_DATAPATH"

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.master_cidr

    master_global_access_config {
      enabled = true
    }
  }

  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = false

    dynamic "cidr_blocks" {
      for_each = var.master_authorized_networks
      content {
        cidr_block   = cidr_blocks.value.cidr_block
        display_name = cidr_blocks.value.display_name
      }
    }
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  release_channel {
    channel = "REGULAR"
  }

  addons_config {
    gcs_fuse_csi_driver_config {
      enabled = true
    }
    gce_persistent_disk_csi_driver_config {
      enabled = true
    }
    http_load_balancing {
      disabled = false
    }
    horizontal_pod_autoscaling {
      disabled = false
    }
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
    managed_prometheus {
      enabled = true
    }
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  # Cost lever: scale-down favours packing nodes tightly and removing idle ones quickly (spot and GPU pools reach
  # zero sooner), and cost allocation splits the bill by namespace and label.
  cluster_autoscaling {
    autoscaling_profile = "OPTIMIZE_UTILIZATION"
  }

  cost_management_config {
    enabled = true
  }

  vertical_pod_autoscaling {
    enabled = true
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  # Upgrades from the release channel happen on weekend nights (UTC).
  maintenance_policy {
    recurring_window {
      start_time = "2025-01-04T01:00:00Z"
      end_time   = "2025-01-04T07:00:00Z"
      recurrence = "FREQ=WEEKLY;BYDAY=SA,SU"
    }
  }

  resource_labels = local.labels

  # Only used for the short-lived default pool; the real pools set their own node_config.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    image_type      = "COS_CONTAINERD"

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }

  lifecycle {
    # The default pool's node_config is irrelevant once the pool is removed; changing it must not recreate
    # the cluster.
    ignore_changes = [node_config]
  }

  depends_on = [google_project_service.required]
}
