pub mod pb {
    pub mod auditlog { tonic::include_proto!("teleport.auditlog.v1"); }
    pub mod proto { tonic::include_proto!("proto"); }
    pub mod types { tonic::include_proto!("types"); }
    pub mod events { tonic::include_proto!("events"); }
}
